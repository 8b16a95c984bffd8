"""Should a chord's notes reach the LSTM bass first or melody first? Two token LSTMs, trained alike.

The generated pieces' top line leaps where real melodies step (realism's most telling features,
emolib/models/melody/README.md). One suspect was the order of the notes inside a chord: emolib's
tokens listed a chord's notes as played (exact ties low to high), so the melody note (the chord's
top) was drawn last or anywhere, and the model could not know while drawing a pitch whether it
would be the top.
This comparison led the shipped models to melody first (``notes.chords_top_first``). Here
the same songs are tokenised both ways and two factorised LSTMs of ``--units`` are trained for
``--minutes`` each on the labelled training songs (all emotions), then compared on:

- validation NLL per note (the same notes either way, so it compares directly);
- in 24 generated 40 s pieces each (temperature 1, top-p 0.95, no steering): the top line's moves
  of 1-2 semitones (steps), of 5+ semitones (leaps), and its repeated 4-interval motifs, beside the
  validation songs' own figures.

Every arm snaps a chord's notes (onsets within 30 ms) to its first onset, so the order is the only
difference. A third arm, ``--orders "as played"``, keeps each chord's notes in the order they were
struck (the earlier tokens' order), to tell a fixed order apart from melody first.

    python benchmarks/bench_chord_order.py [--minutes 12] [--units 256] [--out runs/bench_chord_order]
    python benchmarks/bench_chord_order.py --orders "as played" [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_music  # the realism benchmark's top line and texture features

from emolib import MUSIC_EMOTIONS, melody, melody_train

CHORD = bench_music.ONSET_TOLERANCE  # onsets closer than this form one chord (0.03 s)


#: The orders compared: the note order within a chord, and whether the model lists chords top first.
ORDERS = {"bass first": False, "melody first": True, "as played": None}


def ordered(table: pd.DataFrame, top_first: bool | None) -> pd.DataFrame:
    """The table with each chord snapped to its first onset and its notes low to high (False), high
    to low (True) or in the order they were played (None)."""
    start = table["start"].to_numpy()
    group = np.cumsum(np.r_[True, np.diff(start) > CHORD]) - 1
    onset = start[np.r_[True, np.diff(group) > 0]][group]
    key = table["start"] if top_first is None else -table["pitch"] if top_first else table["pitch"]
    t = table.assign(start=onset, end=np.maximum(table["end"].to_numpy(), onset + 1e-3), group=group, key=key)
    t = t.sort_values(["group", "key"], kind="stable").drop(columns=["group", "key"]).reset_index(drop=True)
    t["duration"] = t["end"] - t["start"]
    t["step"] = np.diff(t["start"].to_numpy(), prepend=t["start"].iloc[0])
    return t


def _notes(table: pd.DataFrame) -> bench_music.Notes:
    return bench_music.Notes.from_rows(table[["start", "end", "pitch", "velocity"]].to_numpy())


def top_line(table: pd.DataFrame) -> np.ndarray:
    """The highest pitch of each onset (the realism benchmark's top line: chords within 30 ms)."""
    notes = _notes(table)
    group, onsets = bench_music._onset_groups(notes)
    return bench_music._top_line(notes, group, len(onsets))


def line_figures(tables) -> dict[str, float]:
    """Median over pieces of the top line's step share, leap share and repeated-motif share (the
    realism benchmark's texture features: mel_step, mel_fourth_fifth and wider, top_4gram_repeat)."""
    names = bench_music.TEXTURE_NAMES
    f = np.array([bench_music.texture_features(_notes(t)) for t in tables])
    col = {n: f[:, names.index(n)] for n in names}
    leaps = col["mel_fourth_fifth"] + col["mel_sixth_octave"] + col["mel_leap_octave"]
    return {"top_steps": float(np.median(col["mel_step"])), "top_leaps": float(np.median(leaps)),
            "top_4gram_repeat": float(np.median(col["top_4gram_repeat"]))}


def train_order(train: dict[str, pd.DataFrame], val: dict[str, pd.DataFrame], folder: Path,
                config: melody_train.TrainConfig, model_config: melody.ModelConfig, top_first: bool | None):
    """One arm: the songs snapped and put in the arm's order, a model trained on them that records
    that order; returns its metrics and the saved generator."""
    tr = {k: ordered(t, top_first) for k, t in train.items()}
    va = {k: ordered(t, top_first) for k, t in val.items()}
    m = melody_train.train(tr, va, folder, config=config, model_config=replace(model_config, top_first=bool(top_first)),
                           command="bench_chord_order")
    return m, melody.load_generator(None, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=12.0, help="training time per order")
    ap.add_argument("--units", type=int, default=256)
    ap.add_argument("--pieces", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for the models and bench_chord_order.json (default: temp)")
    ap.add_argument("--orders", nargs="+", choices=list(ORDERS), default=["bass first", "melody first"],
                    help="the arms to train (default: bass first, melody first)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_chord_order_"))
    midi = melody_train.default_midi_dir()
    splits = {e: melody_train.labelled_split(midi, e, seed=args.seed) for e in MUSIC_EMOTIONS}
    train, _ = melody_train.load_songs([f for s in splits.values() for f in s["train"]])
    val, _ = melody_train.load_songs([f for s in splits.values() for f in s["val"]])
    config = replace(melody_train.FINE_TUNE, minutes=args.minutes, learning_rate=1e-3, patience=100, seed=args.seed)
    real = [ordered(t, False) for t in val.values()]
    results: dict[str, dict] = {"real validation songs (40 s)": line_figures(
        [t[t["start"] < t["start"].iloc[0] + 40] for t in real])}
    for name in args.orders:
        folder = out / name.replace(" ", "_")
        m, gen = train_order(train, val, folder, config, melody.ModelConfig(units=args.units), ORDERS[name])
        pieces = [gen.generate_notes(40, seed=k) for k in range(args.pieces)]
        results[name] = {"epochs": m["epochs_run"], "val_nll": m["val"]["nll"], "pitch_top1": m["val"]["pitch_top1"],
                         **line_figures(pieces)}
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    (out / "bench_chord_order.json").write_text(json.dumps({"minutes_each": args.minutes, "units": args.units,
                                                            "results": results}, indent=2))
    print(f"{'':30s} {'epochs':>6s} {'NLL/note':>9s} {'top steps':>10s} {'top leaps':>10s} {'4-gram repeats':>15s}")
    for name, r in results.items():
        print(f"{name:30s} {r.get('epochs', ''):>6} {r.get('val_nll', float('nan')):9.3f} {r['top_steps']:10.1%} "
              f"{r['top_leaps']:10.1%} {r['top_4gram_repeat']:15.1%}")


if __name__ == "__main__":
    main()
