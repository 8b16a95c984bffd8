"""Batch transcription throughput: seconds of audio transcribed per wall-clock second.

Runs ``emolib.transcribe.transcribe_tree`` over a folder of MP3s (default: the 24 reference clips
in ``<data>/music/mp3``) into a fresh temporary folder (``force``), once per worker count (default:
1 worker, then all cores). Wall time covers the whole batch: worker start-up and model loading,
decoding, inference, note decoding and writing. Prints one JSON line per run with the machine's
load average before and after (other jobs on a shared machine depress the figure), and the CPU
time the batch used (this process + its workers): ``realtime_per_cpu`` = audio seconds per CPU
second is what one uncontended core achieves, so ``cores x realtime_per_cpu`` estimates the
throughput of the same batch on an idle machine. Goal: >= 20x real time for the batch.

    python benchmarks/bench_transcribe_throughput.py                     # 1 worker, then all cores
    python benchmarks/bench_transcribe_throughput.py --workers 2 --repeat 2 --mp3-dir /some/mp3s
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import batch, transcribe
from emolib.paths import data_root


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mp3-dir", type=Path, default=None, help="default: <data_root>/music/mp3")
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts to try (default: 1 and all)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    mp3_dir = args.mp3_dir or data_root() / "music" / "mp3"
    cores = batch.cpu_count()
    counts = args.workers or sorted({1, cores})
    for workers in counts:
        for run in range(args.repeat):
            before = os.getloadavg()
            cpu_before = _cpu_seconds()
            with tempfile.TemporaryDirectory(prefix="emolib-tput-") as out:
                summary = transcribe.transcribe_tree(mp3_dir, out, workers=workers, force=True,
                                                     progress=sys.stderr.isatty())
            cpu = _cpu_seconds() - cpu_before
            print(json.dumps({
                "workers": workers, "run": run, "cores": cores, "files": summary["files"],
                "converted": summary["converted"], "failed": summary["failed"],
                "audio_seconds": summary["audio_seconds"], "wall_seconds": summary["wall_seconds"],
                "realtime": summary["realtime"], "cpu_seconds": round(cpu, 1),
                "realtime_per_cpu": round(summary["audio_seconds"] / cpu, 1) if cpu else None,
                "load_before": [round(x, 2) for x in before],
                "load_after": [round(x, 2) for x in os.getloadavg()],
            }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
