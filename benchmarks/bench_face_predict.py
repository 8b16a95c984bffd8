"""Face-emotion prediction speed: warm single-photo prediction (goal <= 100 ms on CPU), its parts,
model load time, and batch throughput on dataset crops.

Run from the repository root:  .venv/bin/python benchmarks/bench_face_predict.py [--photo P] [--repeat 30]
Prints one JSON object (milliseconds unless named otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import face_model, faces
from emolib.paths import ASSETS_DIR


def _timed(fn, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
            "min_ms": round(times[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_photo = next(iter(sorted(ASSETS_DIR.glob("*.jpg"))), None) if ASSETS_DIR.is_dir() else None
    parser.add_argument("--photo", type=Path, default=default_photo,
                        help="a photo (default: the bundled demo portrait)")
    parser.add_argument("--model", type=Path, default=None,
                        help="a face model: .onnx or folder (run time) or .keras (default: the shipped ONNX)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if args.photo is None:
        raise SystemExit("no photo: pass --photo")

    t = time.perf_counter()
    model = (face_model.load_keras_model(args.model) if args.model and args.model.suffix == ".keras"
             else face_model.load_face_model(args.model))
    load_s = time.perf_counter() - t
    data = args.photo.read_bytes()
    t = time.perf_counter()
    first = model.predict_photo(data, name=str(args.photo))
    first_ms = (time.perf_counter() - t) * 1000
    for _ in range(3):
        model.predict_photo(data)

    image = faces.load_image(data)
    found = faces.find_faces(image)
    crops = np.stack([f.crop for f in found[:1]])
    batch = np.random.default_rng(0).integers(0, 256, (512, 48, 48), dtype=np.uint8)
    model.predict(batch)
    t = time.perf_counter()
    model.predict(batch)
    batch_s = time.perf_counter() - t

    report = {
        "photo": str(args.photo), "photo_size": [int(image.shape[1]), int(image.shape[0])],
        "face_found": first[0]["face_found"], "emotion": first[0]["emotion"],
        "warm_predict_photo": _timed(lambda: model.predict_photo(data), args.repeat),
        "parts": {
            "load_image": _timed(lambda: faces.load_image(data), args.repeat),
            "find_faces": _timed(lambda: faces.find_faces(image), args.repeat),
            "model_on_one_crop": _timed(lambda: model.predict(crops), args.repeat),
        },
        "first_call_after_load_ms": round(first_ms, 1),
        "model_load_s": round(load_s, 2),
        "batch_crops_per_s": round(len(batch) / batch_s, 1),
        "tta_flip": model.tta_flip,
        "goal_warm_ms": 100,
        "cpus": os.cpu_count(),
    }
    report["meets_goal"] = report["warm_predict_photo"]["median_ms"] <= 100
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
