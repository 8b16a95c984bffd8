"""The fidelity benchmark's originality search (longest pitch run shared with a corpus) is exact."""
from __future__ import annotations

import importlib.util

import numpy as np

from emolib.paths import REPO_ROOT


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fidelity", REPO_ROOT / "benchmarks" / "bench_fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def brute_longest(piece, corpus) -> int:
    best = 0
    for c in corpus:
        for i in range(len(piece)):
            for j in range(len(c)):
                k = 0
                while i + k < len(piece) and j + k < len(c) and piece[i + k] == c[j + k]:
                    k += 1
                best = max(best, k)
    return best


def test_longest_shared_run_matches_brute_force():
    rng = np.random.default_rng(0)
    corpus = [rng.integers(40, 80, 120) for _ in range(12)]
    pieces = [rng.integers(40, 80, 60) for _ in range(3)]
    pieces.append(np.concatenate([rng.integers(40, 80, 10), corpus[3][30:55], rng.integers(40, 80, 10)]))  # copied 25
    pieces.append(np.concatenate([corpus[0][-9:], corpus[1][:9]]))  # spans two clips: only 9 count
    pieces.append(np.array([200, 201]))  # shares nothing
    runs = _bench().RunIndex(corpus).longest_runs(pieces)
    assert list(runs) == [brute_longest(p, corpus) for p in pieces]
    assert runs[3] >= 25 and runs[4] == 9 and runs[5] == 0
