"""Generation speed: one ``model.predict`` per note (the tutorial's loop) vs emolib's numpy step, same model.

The tutorial generates each note by running the Keras model over the whole window again. emolib
carries the LSTM state and runs one numpy step per note on the exported weights, drawing the four
parts of the note (step, pitch, duration, velocity) in turn. Both run here on the same shipped
note LSTM and primer; the script prints seconds per note, the ratio, the cold load time and the
warm time of one 40 s piece (goal: at most 150 ms on 2 cores), both from the LSTM alone and as users
hear it (``steer.generate``: guided from the base, which runs a second LSTM beside it, and steered).
Pieces use both cores when they pay (``emolib.blas``); the piece as heard on one thread, as in an
``emolib app`` kernel, is timed too. Run it on an otherwise idle machine.

    python benchmarks/bench_melody_generation.py [--emotion happy] [--model DIR] [--notes 60] [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's emolib, not an installed one


def predict_per_note_loop(gen, primer: np.ndarray, num_predictions: int, seed: int = 0) -> np.ndarray:
    """The tutorial's way: the whole window through ``model.predict`` for every note (parts drawn in turn)."""
    from emolib import guards
    from emolib.melody import Sampling
    from emolib.notes import TOKEN_FIELDS

    rng = np.random.default_rng(seed)
    sampling = Sampling.of(1.0, 0.95)
    window = np.asarray(primer, np.int32)
    for _ in range(num_predictions):
        chosen = np.zeros(4, np.int32)
        for k, part in enumerate(TOKEN_FIELDS):  # each part is conditioned on the ones before: one call per part
            nxt = np.concatenate([window[1:, :3], chosen[None, :3]])
            x = {"notes": window[None], "next": nxt[None]}
            if gen.config.held_input:  # the keys down at each next onset (pitch and what follows: not yet known)
                x["held"] = guards.down_before(window, np.r_[window[1:, 0], chosen[0]])[None]
            logits = gen.model.predict(x, verbose=0)[part][0, -1]
            chosen[k] = sampling.draw(part, logits, rng)
        window = np.concatenate([window[1:], chosen[None]])
    return window


def numpy_step_loop(gen, primer: np.ndarray, num_predictions: int, seed: int = 0) -> None:
    """emolib's per-note work for the same count: prime the state, then one numpy step + sample per note."""
    from emolib import guards
    from emolib.melody import Sampling

    rng = np.random.default_rng(seed)
    sampling = Sampling.of(1.0, 0.95)
    state, keys = gen.initial_state(), guards.Keys() if gen.config.held_input else None
    h = None
    for token in primer:
        h, state = gen.step(token, state)
    for k in range(num_predictions):
        token = gen.sample_note(h, rng, sampling, held=None if keys is None else keys.held())
        if keys is not None:
            keys.strike(token, first=k == 0)
        h, state = gen.step(token, state)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emotion", default="happy")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--notes", type=int, default=60, help="notes for the per-note predict comparison")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()

    from emolib import melody, notes

    t0 = time.perf_counter()
    gen = melody.load_generator(args.emotion, path=args.model)
    load_s = time.perf_counter() - t0
    tf_loaded = "tensorflow" in sys.modules
    primer = gen.primers[0]

    from threadpoolctl import threadpool_limits

    from emolib import blas, guidance, steer

    def pieces_of(g, hook=None) -> tuple[list[float], list[int], list[int]]:
        """Warm times, note counts and BLAS thread counts of ``args.repeats`` pieces (after a warm-up)."""
        g.generate(seconds=args.seconds, seed=0, steer=hook() if hook else None)
        times, sizes, threads = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            midi = g.generate(seconds=args.seconds, seed=r, steer=hook() if hook else None)
            times.append(time.perf_counter() - t)
            sizes.append(notes.describe(midi)["notes"])
            threads.append(blas.settled[-1])
        return times, sizes, threads

    pieces, sizes, threads = pieces_of(gen)
    guided = guidance.generator(args.emotion, args.model)  # what steer.generate plays: guided, steered
    steering = steer.steering_for(args.emotion)
    heard, heard_sizes, heard_threads = pieces_of(guided, lambda: steer.hook(args.emotion, steering))
    with threadpool_limits(limits=1, user_api="blas"):  # as in an `emolib app` kernel: one core per visitor
        heard_one, _, _ = pieces_of(guided, lambda: steer.hook(args.emotion, steering))

    numpy_step_loop(gen, primer, args.notes)  # warm-up
    ours = []
    for r in range(args.repeats):
        t = time.perf_counter()
        numpy_step_loop(gen, primer, args.notes, seed=r)
        ours.append(time.perf_counter() - t)
    ours_s = statistics.median(ours)

    predict_per_note_loop(gen, primer, 2)  # warm-up (graph tracing)
    t = time.perf_counter()
    predict_per_note_loop(gen, primer, args.notes)
    predict_s = time.perf_counter() - t
    print(json.dumps({
        "emotion": args.emotion,
        "load_generator_s": round(load_s, 4),
        "tensorflow_imported_by_generation": tf_loaded,
        "piece_seconds": args.seconds,
        "piece_warm_s_median": round(statistics.median(pieces), 4),
        "piece_warm_s_max": round(max(pieces), 4),
        "piece_notes_median": int(statistics.median(sizes)),
        "piece_as_heard_warm_s_median": round(statistics.median(heard), 4),
        "piece_as_heard_warm_s_max": round(max(heard), 4),
        "piece_as_heard_notes_median": int(statistics.median(heard_sizes)),
        "piece_as_heard_one_thread_s_median": round(statistics.median(heard_one), 4),
        "blas_threads_per_piece": threads,
        "blas_threads_per_piece_as_heard": heard_threads,
        "piece_ms_per_note": round(1000 * sum(pieces) / sum(sizes), 3),
        "piece_as_heard_ms_per_note": round(1000 * sum(heard) / sum(heard_sizes), 3),
        "notes": args.notes,
        "predict_per_note_s": round(predict_s, 3),
        "predict_s_per_note": round(predict_s / args.notes, 5),
        "numpy_step_s": round(ours_s, 4),
        "numpy_s_per_note": round(ours_s / args.notes, 6),
        "speedup": round(predict_s / ours_s, 1),
    }))


if __name__ == "__main__":
    main()
