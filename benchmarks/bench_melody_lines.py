"""Where a melody's leaps come from: the LSTM's melody notes one note ahead of a real context, over a
real accompaniment, and in free pieces, against the real songs (validation songs by default).

The melody is each onset's first note (its top: tokens list a chord's notes highest first). On the
first ``--max-notes`` notes of every held-out song, at each onset after ``--warm`` notes, the LSTM
draws only that note's pitch (temperature 1, the given top-p; no validity guards), given the song's
real timing (its step token). Then it is fed on either the real note (a: one note ahead of a real
context) or the drawn pitch with the real duration and loudness, every other note staying real
(b: its own melody over the real accompaniment). Free pieces (``--pieces`` of 40 s, no phrase repeats
and as heard) are measured the same way: moves between consecutive onsets' first notes.

A move is a step (1-2 semitones), a third (3-4), a fourth or fifth (5 or 7) or a repeat (0); the rest
(tritones, sixths, wider) is not shown. This groups onsets by token, not within a tolerance as
``bench_music``'s ``mel_*`` features do, so its real-song figures differ from theirs.

    python benchmarks/bench_melody_lines.py [--emotions happy relax angry] [--guidance 2] [--top-p 0.9]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's emolib, not an installed one

from emolib import MUSIC_EMOTIONS, guards, guidance, melody, steer
from emolib.melody_train import default_midi_dir, labelled_split
from emolib.notes import midi_to_notes, tokenize
from emolib.sampling import Sampling

MOVES = {"step": (1, 2), "third": (3, 4), "fourth/fifth": (5, 7), "repeat": (0,)}


def shares(moves: Sequence[int]) -> dict[str, float]:
    """Share of melody moves of each kind (``MOVES``), and how many moves there were."""
    size = np.abs(np.asarray(moves, np.int64))
    out = {kind: float(np.isin(size, semitones).mean()) if len(size) else float("nan")
           for kind, semitones in MOVES.items()}
    return {**out, "moves": len(size)}


def one_note_ahead(gen: melody.MelodyGenerator, tokens: np.ndarray, sampling: Sampling, rng: np.random.Generator,
                   own_melody: bool, warm: int) -> tuple[list[int], list[int]]:
    """The drawn melody moves and the real ones through ``tokens`` (a real song, melody first); with
    ``own_melody`` the drawn pitches are fed on (b), else the real notes (a)."""
    state, keys, h = gen.initial_state(), guards.Keys(), None
    drawn_moves, real_moves, top = [], [], None
    for k, real in enumerate(tokens):
        token = np.array(real, np.int64)
        first = k > 0 and token[0] != 0
        if first and k >= warm and top is not None and h is not None:
            step = int(token[0])
            logits = gen.part_logits("pitch", gen.head_inputs(h), {"step": step}, gen.held_down(keys.held(), step))
            pitch = sampling.draw("pitch", logits + gen._piano_only, rng)
            drawn_moves.append(pitch - top)
            real_moves.append(int(token[1]) - top)
            if own_melody:
                token[1] = pitch
        if k == 0 or first:
            top = int(token[1])
        keys.strike(token, first=k == 0)
        h, state = gen.step(token, state)
    return drawn_moves, real_moves


def free_moves(gen: melody.MelodyGenerator, emotion: str, pieces: int, heard: bool) -> list[int]:
    """Melody moves of ``pieces`` free 40 s pieces (seeds 0..pieces-1): no phrase repeats, or as heard."""
    hook = steer.hook(emotion, steer.steering_for(emotion)) if heard else None
    moves: list[int] = []
    for seed in range(pieces):
        tokens, _ = gen.generate_tokens(40.0, seed=seed, steer=hook)
        tops = [int(tokens[k][1]) for k in range(1, len(tokens)) if tokens[k][0] != 0]
        moves += np.diff(tops).tolist()
    return moves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emotions", nargs="+", default=["happy", "relax", "angry"], choices=list(MUSIC_EMOTIONS))
    ap.add_argument("--heldout", choices=["val", "test"], default="val", help="which held-out songs (val)")
    ap.add_argument("--guidance", type=float, default=guidance.GUIDANCE,
                    help="guidance from the base (0: the LSTM alone)")
    ap.add_argument("--top-p", type=float, default=None, help="nucleus for the pitch (default: sampling.TOP_P's)")
    ap.add_argument("--warm", type=int, default=48, help="notes of each song played before any is drawn (48)")
    ap.add_argument("--max-notes", type=int, default=400, help="notes of each song used (400)")
    ap.add_argument("--pieces", type=int, default=30, help="free pieces per emotion (30; 0: none)")
    args = ap.parse_args()
    sampling = Sampling.of(1.0, None if args.top_p is None else {"pitch": args.top_p})
    results: dict[str, dict[str, dict[str, float]]] = {}
    for e in args.emotions:
        gen = guidance.generator(e, guidance=args.guidance)
        files = labelled_split(default_midi_dir(), e, seed=0)[args.heldout]
        rows: dict[str, list[int]] = {"real songs": [], "a: one note ahead": [],
                                      "b: own melody, real accompaniment": []}
        for i, f in enumerate(files):
            tokens = tokenize(midi_to_notes(f), top_first=True)[:args.max_notes]
            drawn, real = one_note_ahead(gen, tokens, sampling, np.random.default_rng([i, ord("a")]), False, args.warm)
            rows["real songs"] += real
            rows["a: one note ahead"] += drawn
            rows["b: own melody, real accompaniment"] += one_note_ahead(
                gen, tokens, sampling, np.random.default_rng([i, ord("b")]), True, args.warm)[0]
        if args.pieces:
            rows["free pieces, no phrase repeats"] = free_moves(gen, e, args.pieces, heard=False)
            rows["free pieces, as heard"] = free_moves(gen, e, args.pieces, heard=True)
        results[e] = {name: shares(moves) for name, moves in rows.items()}
        print(f"\n== {e}: melody moves ({len(files)} {args.heldout} songs; guidance {args.guidance:g}, "
              f"top-p for pitch {sampling.top_p['pitch']:g})", flush=True)
        print(f"{'':40s}" + "".join(f"{kind:>14s}" for kind in MOVES) + f"{'moves':>8s}")
        for name, s in results[e].items():
            print(f"{name:40s}" + "".join(f"{s[kind]:14.3f}" for kind in MOVES) + f"{s['moves']:8.0f}", flush=True)
    print(json.dumps({"guidance": args.guidance, "top_p_pitch": sampling.top_p["pitch"], "heldout": args.heldout,
                      "results": results}))


if __name__ == "__main__":
    main()
