"""benchmarks/bench_chord_order.py: the two chord orders hold the same notes, and the top-line figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_chord_order")


def _table(rows):
    t = pd.DataFrame(rows, columns=["pitch", "start", "end", "velocity"])
    return t.assign(duration=t["end"] - t["start"], step=np.diff(t["start"], prepend=t["start"].iloc[0]))


def test_orders_snap_each_chord_and_only_reorder_it(bench):
    # a C major chord played 10 ms apart (performed), then a melody note alone
    song = _table([(48, 0.0, 1.0, 60), (64, 0.01, 1.0, 70), (72, 0.02, 1.0, 80), (74, 1.0, 1.5, 80)])
    low, high = bench.ordered(song, False), bench.ordered(song, True)
    assert low["pitch"].tolist() == [48, 64, 72, 74] and high["pitch"].tolist() == [72, 64, 48, 74]
    for t in (low, high):
        assert t["start"].tolist() == [0.0, 0.0, 0.0, 1.0] and t["step"].tolist() == [0.0, 0.0, 0.0, 1.0]
        assert (t["duration"] > 0).all()
    notes = [sorted(map(tuple, t[["pitch", "velocity"]].values)) for t in (low, high)]
    assert notes[0] == notes[1]
    # as played: snapped too, but the chord keeps the order its notes were struck in
    struck = _table([(72, 0.0, 1.0, 80), (48, 0.01, 1.0, 60), (64, 0.02, 1.0, 70), (74, 1.0, 1.5, 80)])
    played = bench.ordered(struck, None)
    assert played["pitch"].tolist() == [72, 48, 64, 74] and played["step"].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_top_line_figures(bench):
    # top line (72 74 76) three times: moves 2 2 -4 2 2 -4 2 2; four of its five 4-interval motifs recur
    tops = [72, 74, 76, 72, 74, 76, 72, 74, 76]
    song = _table([(p, float(k), k + 0.5, 80) for k, p in enumerate(tops)] + [(48, 0.0, 0.5, 60)])
    song = song.sort_values(["start", "pitch"]).reset_index(drop=True)
    assert bench.top_line(song).tolist() == tops
    figures = bench.line_figures([song])
    assert figures["top_steps"] == pytest.approx(6 / 8) and figures["top_leaps"] == 0.0
    assert figures["top_4gram_repeat"] == pytest.approx(4 / 5)


def test_each_arm_trains_on_its_own_order(bench, tmp_path):
    from emolib import melody_train
    from tests.mididata import SMALL, chord_moves

    rng = np.random.default_rng(0)  # performed chords: three notes within 10 ms, in random playing order
    songs = {f"s{k}": _table([(int(p), t + 0.005 * j, t + 0.4, 70) for t in np.arange(0, 30, 0.5)
                              for j, p in enumerate(rng.permutation(rng.choice(np.arange(48, 84), 3, replace=False)))])
             for k in range(4)}
    config = melody_train.TrainConfig(epochs=1, minutes=None, seq_length=32, batch_size=8)
    for top_first in (False, True):
        m, gen = bench.train_order(songs, songs, tmp_path / str(top_first), config, SMALL, top_first)
        assert gen.config.top_first is top_first and m["model_config"]["top_first"] is top_first
        move = chord_moves(gen.primers)
        assert len(move) and ((move < 0) if top_first else (move > 0)).all()

