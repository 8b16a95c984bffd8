"""Photo -> music speed and memory: cold CLI, warm pipeline call (with audio), peak RSS.

Goals (issue #6): cold CLI <= 10 s (process start to files written), warm call including audio
<= 1 s, peak memory <= 1.5 GB.  Run:  .venv/bin/python benchmarks/bench_pipeline.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emolib.pipeline import SAMPLE_PHOTO, image_to_music


def cold_cli(photo: Path, out: Path) -> tuple[float, float]:
    """Seconds from process start to files written, and the child's peak RSS in MB."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "emolib", "image2music", str(photo), "--out", str(out), "--seed", "0"],
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photo", type=Path, default=SAMPLE_PHOTO)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold, peak = cold_cli(args.photo, Path(tmp) / "cold")
        image_to_music(args.photo, seconds=args.seconds, seed=0)  # warm-up: models loaded, graphs traced
        runs = []
        for k in range(args.repeat):
            t = time.perf_counter()
            r = image_to_music(args.photo, seconds=args.seconds, seed=k + 1)
            runs.append(time.perf_counter() - t)
        warm = sorted(runs)[len(runs) // 2]
        report = {
            "cold_cli_s": round(cold, 2), "cold_goal_s": 10,
            "warm_call_median_s": round(warm, 3), "warm_goal_s": 1.0,
            "warm_stages_s": {k: round(v, 3) for k, v in r.timings.items()},
            "peak_rss_cli_mb": round(peak, 0), "peak_rss_goal_mb": 1536,
            "peak_rss_this_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
            "seconds_of_music": round(r.seconds, 1), "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
