"""Cold start of photo -> music: `python -m emolib image2music PHOTO` in a fresh process, N times.

Prints the median and max wall time (process start to files written), the peak RSS of each run,
and the heavy modules the command imported (TensorFlow/Keras must not be among them: the face
model runs from its ONNX export). Figures only, no assertions; the machine's other load shows in
the spread, so read the best and the median.

    python benchmarks/bench_image2music_cold.py [--runs 5] [--photo emolib/assets/astronaut.jpg]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "tf2onnx", "torch", "matplotlib", "pandas", "sklearn", "scipy", "librosa", "seaborn",
         "numba", "onnxruntime", "cv2", "pretty_midi")
#: Runs the CLI in-process and then reports which heavy top-level modules it imported (on stderr, last line).
WRAPPER = ("import runpy, sys, json\n"
           "heavy = {heavy!r}\n"
           "sys.argv = ['emolib', *sys.argv[1:]]\n"
           "try:\n    runpy.run_module('emolib', run_name='__main__')\n"
           "except SystemExit as e:\n    code = e.code\n"
           "else:\n    code = 0\n"
           "loaded = {{m.split('.')[0] for m in sys.modules}}\n"
           "print('HEAVY ' + json.dumps(sorted(loaded & set(heavy))), file=sys.stderr)\n"
           "sys.exit(code)\n")


def run_once(photo: Path, out: Path, extra: list[str]) -> dict:
    """One cold run: wall seconds (process start to files written) and the heavy modules it imported."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", WRAPPER.format(heavy=HEAVY), "image2music", str(photo), "--out",
                          str(out), *extra], capture_output=True, text=True, cwd=REPO, env=os.environ.copy())
    wall = time.perf_counter() - t
    heavy = next((json.loads(line[6:]) for line in res.stderr.splitlines() if line.startswith("HEAVY ")), None)
    return {"ok": res.returncode == 0, "wall_s": wall, "heavy": heavy,
            "stderr_tail": res.stderr[-300:] if res.returncode else ""}


def rss_with_time(photo: Path, out: Path, extra: list[str]) -> float | None:
    """Peak RSS (MB) of one plain `python -m emolib image2music` run: /usr/bin/time -v, else getrusage."""
    if not Path("/usr/bin/time").exists():
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([sys.executable, "-m", "emolib", "image2music", str(photo), "--out", str(out), *extra],
                       capture_output=True, cwd=REPO)
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the max over children: a lower bound
        return after / 1024 if after > before else None
    res = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "emolib", "image2music", str(photo), "--out",
                          str(out), *extra], capture_output=True, text=True, cwd=REPO)
    line = next((x for x in res.stderr.splitlines() if "Maximum resident set size" in x), None)
    return int(line.split(":")[1]) / 1024 if line else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--photo", type=Path, default=REPO / "emolib" / "assets" / "astronaut.jpg")
    parser.add_argument("--seconds", type=float, default=None, help="music length (default: the CLI's)")
    args = parser.parse_args()
    extra = ["--seconds", str(args.seconds)] if args.seconds else []
    walls, rss, heavy = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.runs):
            row = run_once(args.photo, Path(tmp) / f"run{k}", extra)
            if not row["ok"]:
                raise SystemExit(f"run {k} failed:\n{row['stderr_tail']}")
            walls.append(row["wall_s"])
            heavy = row["heavy"]
            mb = rss_with_time(args.photo, Path(tmp) / f"rss{k}", extra)
            if mb is not None:
                rss.append(mb)
            print(f"run {k + 1}: {row['wall_s']:.2f} s" + (f", peak RSS {mb:.0f} MB" if mb else ""), file=sys.stderr)
    summary = {"command": f"python -m emolib image2music {args.photo} --out DIR", "runs": args.runs,
               "wall_s": {"best": round(min(walls), 3), "median": round(statistics.median(walls), 3),
                          "max": round(max(walls), 3)},
               "peak_rss_mb": ({"best": round(min(rss)), "median": round(statistics.median(rss)),
                                "max": round(max(rss))}
                               if rss else None),
               "heavy_modules_imported": heavy, "cpus": os.cpu_count(),
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
