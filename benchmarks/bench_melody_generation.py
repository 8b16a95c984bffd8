"""Generation speed: the original seed-style loop vs emolib's state-carrying numpy step, same model.

The original notebook generated each note with ``model.predict`` on the sliding 25-note window
(``predict_next_note`` of the TensorFlow tutorial). emolib carries the LSTM state and runs one
numpy step per note on the exported weights. Both run here on the same trained model and the
same primer; the script prints seconds per note, the ratio, and the warm time of one 40 s piece.

    python benchmarks/bench_melody_generation.py [--emotion happy] [--model DIR] [--notes 120] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's emolib, not an installed one


def seed_style_loop(model, primer: np.ndarray, num_predictions: int, temperature: float = 1.0) -> np.ndarray:
    """The original loop: one ``model.predict`` per note on the sliding window (tutorial code)."""
    import tensorflow as tf

    input_notes = primer[:, :3] / np.array([128.0, 1.0, 1.0], np.float32)
    generated = []
    for _ in range(num_predictions):
        predictions = model.predict(tf.expand_dims(input_notes, 0), verbose=0)
        pitch_logits = predictions["pitch"] / temperature
        pitch = int(tf.random.categorical(pitch_logits, num_samples=1)[0, 0])
        step = max(0.0, float(predictions["step"][0, 0]))
        duration = max(0.0, float(predictions["duration"][0, 0]))
        input_note = np.array([pitch / 128.0, step, duration], np.float32)
        generated.append((pitch, step, duration))
        input_notes = np.delete(input_notes, 0, axis=0)
        input_notes = np.append(input_notes, np.expand_dims(input_note, 0), axis=0)
    return np.array(generated)


def emolib_loop(gen, primer: np.ndarray, num_predictions: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """emolib's per-note work for the same count: prime the state, then one numpy step + sample per note."""
    rng = np.random.default_rng(seed)
    state = gen.initial_state()
    out = None
    for p, s, d in primer[:, :3]:
        out, state = gen.step((p / 128.0, s, d), state)
    generated = []
    for _ in range(num_predictions):
        pitch, step, duration = gen.sample(out, rng, temperature)
        generated.append((pitch, step, duration))
        out, state = gen.step((pitch / 128.0, step, duration), state)
    return np.array(generated)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emotion", default="happy")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--notes", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()

    from emolib import melody, notes

    t0 = time.perf_counter()
    gen = melody.load_generator(args.emotion, path=args.model)
    load_s = time.perf_counter() - t0
    model = gen.model
    primer = gen.primers[0]

    seed_style_loop(model, primer, 3)  # warm-up (graph tracing)
    t = time.perf_counter()
    seed_style_loop(model, primer, args.notes)
    seed_s = time.perf_counter() - t

    emolib_loop(gen, primer, args.notes)  # warm-up
    ours = []
    for r in range(args.repeats):
        t = time.perf_counter()
        emolib_loop(gen, primer, args.notes, seed=r)
        ours.append(time.perf_counter() - t)
    ours_s = statistics.median(ours)

    gen.generate(seconds=args.seconds, seed=0)  # warm-up
    pieces, sizes = [], []
    for r in range(args.repeats):
        t = time.perf_counter()
        midi = gen.generate(seconds=args.seconds, seed=r)
        pieces.append(time.perf_counter() - t)
        sizes.append(notes.describe(midi)["notes"])
    print(json.dumps({
        "emotion": args.emotion,
        "notes": args.notes,
        "load_generator_s": round(load_s, 4),
        "seed_style_predict_loop_s": round(seed_s, 3),
        "seed_style_s_per_note": round(seed_s / args.notes, 5),
        "emolib_numpy_step_s": round(ours_s, 4),
        "emolib_s_per_note": round(ours_s / args.notes, 6),
        "speedup": round(seed_s / ours_s, 1),
        "piece_seconds": args.seconds,
        "piece_warm_s_median": round(statistics.median(pieces), 4),
        "piece_warm_s_max": round(max(pieces), 4),
        "piece_notes_median": int(statistics.median(sizes)),
    }))


if __name__ == "__main__":
    main()
