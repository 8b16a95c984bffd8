"""Which note representation should the emotion LSTMs use? Three, trained for the same time on the same songs.

1. ``factorised``: emolib's note tokens (step, pitch, duration, velocity; each part's head sees the
   parts drawn before it), the shipped design;
2. ``independent``: the same tokens, every part predicted from the LSTM state alone (the tutorial's
   heads made categorical);
3. ``events``: Performance-RNN-style events (note-on, note-off, time-shift in 10 ms units up to 1 s,
   velocity in 16 bins), one softmax over all events.

All three: 2 LSTM layers of ``--units``, trained ``--minutes`` each on the labelled training songs
(all emotions, transposed -5..+6), scored on the validation songs. 1 and 2 share their
quantisation, so their NLL per note compares directly; 3 quantises time differently, so its NLL is
shown per event and per note but the deciding figures are the ones every scheme has: steps per
note (training cost and generation time scale with it) and the share of generated onsets that are
chords (real clips: about 40%).

    python benchmarks/bench_note_tokens.py [--minutes 6] [--units 256] [--out runs/bench_note_tokens]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emolib import MUSIC_EMOTIONS, melody, melody_train
from emolib.notes import VELOCITY_BIN

SHIFT_MS, MAX_SHIFT = 10, 100  # time-shift events: 10 ms units, at most 1 s per event
ON, OFF, SHIFT, VEL = 0, 128, 256, 256 + MAX_SHIFT
VOCAB = VEL + 128 // VELOCITY_BIN


def events(table) -> np.ndarray:
    """Performance-RNN events of a note table (velocity emitted when it changes)."""
    marks = [(float(s), 1, int(p), int(v)) for p, s, v in zip(table["pitch"], table["start"], table["velocity"])]
    marks += [(float(e), 0, int(p), 0) for p, e in zip(table["pitch"], table["end"])]
    marks.sort()
    out, now, vel = [], 0.0, -1
    for t, is_on, pitch, v in marks:
        ticks = int(round((t - now) * 1000 / SHIFT_MS))
        while ticks > 0:
            k = min(ticks, MAX_SHIFT)
            out.append(SHIFT + k - 1)
            ticks -= k
        now = t
        if is_on:
            if v // VELOCITY_BIN != vel:
                vel = v // VELOCITY_BIN
                out.append(VEL + vel)
            out.append(ON + pitch)
        else:
            out.append(OFF + pitch)
    return np.array(out, np.int32)


def event_sequences(songs, length: int, rng=None, transpose=(-5, 6)) -> np.ndarray:
    rows = []
    for table in songs.values():
        t = table
        if rng is not None:
            t = table.assign(pitch=np.clip(table["pitch"] + int(rng.integers(transpose[0], transpose[1] + 1)), 0, 127))
        ev = events(t)
        start = int(rng.integers(0, length)) if rng is not None and len(ev) > length + 1 else 0
        for at in range(start, max(len(ev) - 1, 0), length):
            piece = ev[at:at + length + 1]
            row = np.full(length + 1, -1, np.int32)
            row[:len(piece)] = piece
            rows.append(row)
    return np.stack(rows)


def train_events(train, val, units: int, minutes: float, seed: int) -> dict:
    """An event LSTM trained for ``minutes``; its validation NLL per event and per note, and chords in samples."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 128)(inp)
    for _ in range(2):
        x = keras.layers.LSTM(units, return_sequences=True)(x)
    model = keras.Model(inp, keras.layers.Dense(VOCAB)(x))
    loss = melody._custom_objects()["masked_token_loss"]
    model.compile(keras.optimizers.Adam(1e-3, clipnorm=1.0), loss=loss)
    rng = np.random.default_rng(seed)
    vseq = event_sequences(val, 512)
    t0, epochs = time.time(), 0
    while time.time() - t0 < minutes * 60:
        seq = event_sequences(train, 512, rng)
        model.fit(np.maximum(seq[:, :-1], 0), seq[:, 1:], batch_size=16, epochs=1, verbose=0)
        epochs += 1
    logits = model.predict(np.maximum(vseq[:, :-1], 0), batch_size=32, verbose=0).astype(np.float64)
    y = vseq[:, 1:]
    mask = y >= 0
    lp = melody.log_softmax(logits)
    nll = -np.take_along_axis(lp, np.maximum(y, 0)[..., None], -1)[..., 0][mask].sum()
    n_notes = int(((y >= ON) & (y < OFF)).sum())
    return {"epochs": epochs, "nll_per_event": float(nll / mask.sum()), "nll_per_note": float(nll / n_notes),
            "events_per_note": float(mask.sum() / n_notes)}


def chord_share(gen, count: int = 8) -> float:
    steps = np.concatenate([gen.generate_notes(40, seed=k)["step"].to_numpy()[1:] for k in range(count)])
    return float((steps < 0.012).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0, help="training time per scheme")
    ap.add_argument("--units", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--midi", default=None, help="labelled MIDI folder (default: DATA_ROOT/music/midi)")
    ap.add_argument("--out", default=None, help="folder for the models and bench_note_tokens.json (default: temp)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_note_tokens_"))
    midi = Path(args.midi) if args.midi else melody_train.default_midi_dir()
    splits = {e: melody_train.labelled_split(midi, e, seed=args.seed) for e in MUSIC_EMOTIONS}
    train, _ = melody_train.load_songs([f for s in splits.values() for f in s["train"]])
    val, _ = melody_train.load_songs([f for s in splits.values() for f in s["val"]])
    real_chords = float(np.mean(np.concatenate([t["step"].to_numpy()[1:] < 0.012 for t in val.values()])))
    config = replace(melody_train.FINE_TUNE, minutes=args.minutes, learning_rate=1e-3, patience=100, seed=args.seed)
    results = {}
    for name, factorised in (("factorised", True), ("independent", False)):
        mc = melody.ModelConfig(units=args.units, factorised=factorised, top_first=False)  # as when it was measured
        m = melody_train.train(train, val, out / name, config=config, model_config=mc, command="bench_note_tokens")
        gen = melody.load_generator(None, out / name)
        results[name] = {"epochs": m["epochs_run"], "nll_per_note": m["val"]["nll"], "steps_per_note": 1.0,
                         "pitch_top1": m["val"]["pitch_top1"], "chord_share_generated": chord_share(gen)}
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    ev = train_events(train, val, args.units, args.minutes, args.seed)
    results["events"] = {"epochs": ev["epochs"], "nll_per_note": ev["nll_per_note"],
                         "nll_per_event": ev["nll_per_event"],
                         "steps_per_note": ev["events_per_note"]}
    summary = {"minutes_each": args.minutes, "units": args.units, "train_songs": len(train), "val_songs": len(val),
               "real_chord_share": real_chords, "results": results}
    (out / "bench_note_tokens.json").write_text(json.dumps(summary, indent=2))
    print(f"{'scheme':12s} {'epochs':>6s} {'NLL/note':>9s} {'steps/note':>10s} {'chords in samples':>18s}")
    for name, r in results.items():
        print(f"{name:12s} {r['epochs']:6d} {r['nll_per_note']:9.3f} {r['steps_per_note']:10.2f} "
              f"{r.get('chord_share_generated', float('nan')):18.1%}")
    print(f"real validation songs: {real_chords:.1%} of onsets are chords; figures -> {out / 'bench_note_tokens.json'}")


if __name__ == "__main__":
    main()
