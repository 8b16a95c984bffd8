"""How often a note strikes a key that is surely still held: generated pieces against real clips.

A MIDI file cannot strike a key whose previous note still sounds, so in tokenised real clips this
only happens where binning blurs an edge (well under 1% of notes). The note LSTM cannot see which
keys are still down: where it strikes one, the piece as written cuts the held note short
(``notes.restrike``). "Surely down" is ``guards.Keys``'s conservative reading, the one the
``guards.HELD_KEYS`` rule uses: the held note's shortest decoding ends after the latest the new onset
can decode to.

    python benchmarks/bench_held_keys.py [--pieces 20] [--clips-every 6] [--held-keys]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's emolib, not an installed one

from emolib import MUSIC_EMOTIONS, guards, guidance, steer
from emolib.melody_train import default_midi_dir
from emolib.notes import midi_files, midi_to_notes, tokenize


def held_strikes(tokens: np.ndarray) -> float:
    """Share of notes striking a key that is surely still down (tokens in generation order)."""
    keys = guards.Keys()
    return float(np.mean([keys.strike(token, first=k == 0) for k, token in enumerate(tokens)])) if len(tokens) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=20, help="40 s pieces per emotion and setting (seeds 0..N-1)")
    ap.add_argument("--clips-every", type=int, default=6, help="every Nth labelled clip of each emotion")
    ap.add_argument("--held-keys", action="store_true", help="generate with guards.HELD_KEYS on")
    args = ap.parse_args()
    guards.HELD_KEYS = args.held_keys
    midi_dir = default_midi_dir()
    results = {}
    for e in MUSIC_EMOTIONS:
        row = {}
        for label, strength in (("plain", 0.0), ("as_heard", steer.DEFAULT_STRENGTH)):
            gen = guidance.generator(e, guidance=guidance.GUIDANCE * strength)
            hook = steer.hook(e, steer.steering_for(e, strength, repeat=steer.DEFAULT_REPEAT if strength else 0.0))
            row[label] = float(np.mean([held_strikes(gen.generate_tokens(40, seed=s, steer=hook)[0])
                                        for s in range(args.pieces)]))
        clips = midi_files(midi_dir / e)[::args.clips_every] if (midi_dir / e).is_dir() else []
        row["real"] = (float(np.mean([held_strikes(tokenize(midi_to_notes(f), top_first=True)) for f in clips]))
                       if clips else None)
        row["real_clips"] = len(clips)
        results[e] = row
        real = "n/a (no data)" if row["real"] is None else f"{row['real']:.2%} of {len(clips)} clips"
        print(f"{e:6s} plain {row['plain']:6.1%}  as heard {row['as_heard']:6.1%}  real {real}", flush=True)
    print(json.dumps({"held_keys": args.held_keys, "pieces": args.pieces, "share_of_notes": results}))


if __name__ == "__main__":
    main()
