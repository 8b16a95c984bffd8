"""benchmarks/bench_melody_lines.py: moves are counted by kind, and a melody drawn one note ahead of a
real context is measured against that context, while its own melody is measured against itself."""
from __future__ import annotations

import numpy as np
import pytest

from emolib.sampling import Sampling
from tests.conftest import load_benchmark
from tests.mididata import random_generator, stuck_generator


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_melody_lines")


def test_shares_count_each_kind_of_move(bench):
    s = bench.shares([0, 1, -2, 3, -4, 5, -7, 6, 12, 0])
    assert (s["repeat"], s["step"], s["third"], s["fourth/fifth"], s["moves"]) == (0.2, 0.2, 0.2, 0.2, 10)
    assert np.isnan(bench.shares([])["step"]) and bench.shares([])["moves"] == 0


def song(onsets: int = 30) -> np.ndarray:
    """A melody climbing the C major scale, a chord note (step 0) under every third onset."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    tokens = []
    for k in range(onsets):
        tokens.append([0 if k == 0 else 10, scale[k % len(scale)], 10, 8])
        if k % 3 == 0:
            tokens.append([0, 48, 10, 8])
    return np.array(tokens)


def test_one_note_ahead_measures_against_the_real_or_the_own_melody(bench):
    gen, tokens, sampling = stuck_generator(), song(), Sampling.of(1.0, 1.0)  # it always draws pitch 50
    tops = [int(t[1]) for k, t in enumerate(tokens) if k == 0 or t[0] != 0]
    drawn, real = bench.one_note_ahead(gen, tokens, sampling, np.random.default_rng(0), False, warm=6)
    measured = len(real)
    assert measured > 15 and real == np.diff(tops).tolist()[-measured:]  # the song's own moves
    assert drawn == [50 - top for top in tops[-measured - 1:-1]]  # from the real melody note before
    own, real_again = bench.one_note_ahead(gen, tokens, sampling, np.random.default_rng(0), True, warm=6)
    assert real_again[1:] != real[1:] and own[0] == drawn[0] and set(own[1:]) == {0}  # from its own note


def test_free_pieces_give_one_move_per_onset(bench):
    moves = bench.free_moves(random_generator(seed=3), "test", pieces=1, heard=False)
    tokens, _ = random_generator(seed=3).generate_tokens(40.0, seed=0)
    onsets = sum(1 for k in range(1, len(tokens)) if tokens[k][0] != 0)
    assert len(moves) == onsets - 1 > 10
