"""benchmarks/bench_held_keys.py: a key struck while surely still held counts, one struck after release
does not, and real MIDI (which cannot hold a key while striking it) reads none."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emolib import notes
from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_held_keys")


def test_held_strikes_counts_only_keys_still_down(bench):
    quarter, long, short = (int(np.searchsorted(e, v)) for e, v in
                            ((notes.STEP_EDGES, 0.25), (notes.DURATION_EDGES, 2.0), (notes.DURATION_EDGES, 0.2)))
    held = np.array([[0, 60, long, 8], [quarter, 64, short, 8], [quarter, 60, short, 8], [quarter, 64, short, 8]])
    assert bench.held_strikes(held) == pytest.approx(1 / 4)  # C4 again 0.5 s into its 2 s note; E4 was released
    released = held.copy()
    released[0, 2] = short
    assert bench.held_strikes(released) == 0.0
    rng = np.random.default_rng(0)  # notes that overlap on their keys, then written to a MIDI file and read back
    start = np.arange(200) * 0.2 + rng.uniform(0, 0.05, 200)
    table = pd.DataFrame({"pitch": rng.integers(55, 62, 200), "start": start, "end": start + rng.uniform(0.1, 1.5, 200),
                          "velocity": 80})
    table = table.assign(duration=table["end"] - table["start"], step=np.diff(start, prepend=start[0]))
    assert bench.held_strikes(notes.tokenize(table, top_first=True)) > 0.3
    from_file = notes.midi_to_notes(notes.notes_to_midi(table))
    assert bench.held_strikes(notes.tokenize(from_file, top_first=True)) < 0.05
