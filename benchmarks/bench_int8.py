"""int8 products against float32: how far the next-note distributions move, and whether pieces differ.

The note LSTMs' large products run on int8 rows (``emolib.int8``). This script measures what that
changes, against the same models with float32 products (the weights as trained, run through the
same kernels: ``Int8Rows`` with float32 values and scale 1):

- teacher forced on the first ``--notes`` notes of ``--songs`` validation songs per emotion, the KL
  divergence per note (four parts summed) from the float32 next-note distribution to the int8 one,
  guided (as heard) and for the LSTM alone, and the NLL of the true notes both ways;
- with ``--pieces N``: N pieces of 40 s per emotion generated each way as users hear them (int8:
  seeds 0..N-1; float32: from ``FLOAT_SEEDS``, as a seed's two pieces would share their opening),
  and ``bench_music``'s realism classifier telling the two sets apart (5-fold balanced accuracy;
  0.5: it cannot).

    python benchmarks/bench_int8.py [--midi-dir DIR] [--songs 10] [--notes 200] [--pieces 0]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's emolib, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from emolib import MUSIC_EMOTIONS, guidance, int8, melody, melody_train, notes, paths, steer
from emolib.notes import TOKEN_FIELDS

#: The float32 pieces' first seed (the int8 pieces start at 0).
FLOAT_SEEDS = 10_000


def float_rows(gen: melody.MelodyGenerator) -> tuple[list[int8.Int8Rows], int8.Int8Rows]:
    """``gen``'s LSTM and head-input matrices as trained, in float32, laid out as its int8 rows."""
    lstm, from_h = melody.product_matrices(gen.weights, gen.config.layers)

    def rows(m: np.ndarray) -> int8.Int8Rows:
        return int8.Int8Rows(np.ascontiguousarray(m, np.float32)[None], np.ones((1, len(m)), np.float32))
    return [rows(m) for m in lstm], rows(from_h)


@contextlib.contextmanager
def in_float32(gen: melody.MelodyGenerator) -> Iterator[melody.MelodyGenerator]:
    """``gen`` (a plain or a ``guidance.Guided`` generator) with float32 products while inside."""
    saved = gen._lstm, gen._from_h, gen._primed
    pair = [gen.tuned, gen.base] if isinstance(gen, guidance.Guided) else [gen]
    parts = [float_rows(g) for g in pair]
    gen._lstm = [(int8.Int8Rows.stack([p[0][k] for p in parts]), bias) for k, (_, bias) in enumerate(gen._lstm)]
    gen._from_h = int8.Int8Rows.stack([p[1] for p in parts])
    gen._primed = {}  # primer states computed with the other products
    try:
        yield gen
    finally:
        gen._lstm, gen._from_h, gen._primed = saved


def log_probs(gen: melody.MelodyGenerator, songs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Per song, per part, the teacher-forced log-probabilities (float64)."""
    return [{f: melody.log_softmax(z.astype(np.float64)) for f, z in gen.teacher_forced_logits(t).items()}
            for t in songs]


def divergence(songs: list[np.ndarray], ref: list[dict], new: list[dict]) -> dict[str, float]:
    """KL(ref || new) per note summed over parts, and both NLLs of the true notes, per note."""
    kl = nll_ref = nll_new = 0.0
    count = 0
    for tokens, a, b in zip(songs, ref, new):
        true = tokens[1:]
        for j, f in enumerate(TOKEN_FIELDS):
            kl += float((np.exp(a[f]) * (a[f] - b[f])).sum())
            nll_ref -= float(a[f][np.arange(len(true)), true[:, j]].sum())
            nll_new -= float(b[f][np.arange(len(true)), true[:, j]].sum())
        count += len(true)
    return {"kl_per_note": kl / count, "nll_float32": nll_ref / count, "nll_int8": nll_new / count}


def pieces_apart(emotion: str, count: int) -> dict[str, float]:
    """Balanced accuracy of bench_music's realism classifier on int8 against float32 pieces."""
    import bench_music as bm

    gen = steer._generator_in(None, emotion, steer.DEFAULT_STRENGTH)

    def features(seeds: range) -> np.ndarray:
        return np.vstack([bm.texture_features(bm.parse_notes(steer.generate(emotion, seed=s))) for s in seeds])
    ours = features(range(count))
    with in_float32(gen):  # other seeds: a seed's two pieces share their primer and opening notes
        theirs = features(range(FLOAT_SEEDS, FLOAT_SEEDS + count))
    r = bm.realism(ours, theirs)
    auc = np.abs(np.array(r["feature_auc"]) - 0.5)
    return {"balanced_accuracy": round(r["balanced_accuracy"], 3), "spread": round(r["repeat_std"], 3),
            "feature_auc_furthest_from_half": round(0.5 + float(auc.max()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midi-dir", default=None, help="labelled MIDI <emotion>/*.mid (default: DATA/music/midi)")
    ap.add_argument("--songs", type=int, default=10, help="validation songs per emotion (10)")
    ap.add_argument("--notes", type=int, default=200, help="notes per song, from its start (200)")
    ap.add_argument("--pieces", type=int, default=0, help="pieces per emotion for the two-sample test (0: none)")
    ap.add_argument("--emotions", nargs="+", default=list(MUSIC_EMOTIONS), choices=list(MUSIC_EMOTIONS))
    args = ap.parse_args()
    midi = Path(args.midi_dir) if args.midi_dir else paths.data_root() / "music" / "midi"
    out = {}
    for e in args.emotions:
        files = melody_train.labelled_split(midi, e)["val"][:args.songs]
        tables, _ = melody_train.load_songs(files)
        row: dict[str, object] = {}
        for name, gen in (("guided", guidance.generator(e)), ("alone", melody.load_generator(e))):
            songs = [notes.tokenize(t, top_first=gen.config.top_first)[:args.notes] for t in tables.values()]
            new = log_probs(gen, songs)
            with in_float32(gen):
                ref = log_probs(gen, songs)
            row[name] = {k: round(v, 5) for k, v in divergence(songs, ref, new).items()}
        if args.pieces:
            row["int8_vs_float32_pieces"] = pieces_apart(e, args.pieces)
        out[e] = row
        print(json.dumps({e: row}), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
