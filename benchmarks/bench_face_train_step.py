"""Face-CNN training speed per precision: milliseconds per training batch of the shipped
architecture, and what that means for a time-budgeted run (seconds per epoch, epochs in 86 min).

``emolib faces train --precision mixed_bfloat16`` is worth it only where the CPU (AMX/AVX-512
bf16) or GPU runs bf16 faster than float32; this measures it on the machine at hand.

Run from the repository root:  .venv/bin/python benchmarks/bench_face_train_step.py [--steps 40]
Prints one JSON object. Keep the machine otherwise idle: the figures are wall-clock times.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import (
    FACE_CLASSES,
    TRAIN_PRECISIONS,
    face_model,
)

TRAINED_FACES = 18_904  # FER2013 train, angry/happy/neutral/sad, less the 10 % validation split: 296 batches of 64


def time_precision(precision: str, batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    """Median wall time of one optimizer step (forward, backward, AdamW update) in ``precision``."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        model = face_model.build_face_cnn(FACE_CLASSES)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.02),
                      loss="categorical_crossentropy", jit_compile=False)
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (batch_size, 48, 48, 1)).astype("float32")
        y = np.eye(len(FACE_CLASSES), dtype="float32")[rng.integers(0, len(FACE_CLASSES), batch_size)]
        for _ in range(warmup):
            model.train_on_batch(x, y)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    ms = statistics.median(times)
    batches = math.ceil(TRAINED_FACES / batch_size)
    return {"median_ms_per_batch": round(ms, 1), "min_ms_per_batch": round(min(times), 1),
            "seconds_per_epoch_estimate": round(ms * batches / 1000, 1),
            "epochs_in_86_min_estimate": int(86 * 60 // (ms * batches / 1000))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"], choices=TRAIN_PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per precision")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (graph tracing)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.1f} before starting: other work shares the cores, figures will be slow",
              file=sys.stderr)
    results = {p: time_precision(p, args.batch_size, args.steps, args.warmup) for p in args.precisions}
    base = results.get("float32", {}).get("median_ms_per_batch")
    if base:
        for r in results.values():
            r["speedup_vs_float32"] = round(base / r["median_ms_per_batch"], 2)
    print(json.dumps({"batch_size": args.batch_size, "cpus": os.cpu_count(), "load_average_before": round(load, 2),
                      "precisions": results}, indent=2))


if __name__ == "__main__":
    main()
