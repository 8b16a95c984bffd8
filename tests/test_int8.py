"""int8 rows for the note LSTM's products (emolib.int8): the rounding, the products on one thread or
two, the LSTM cell, and generators whose Keras weights are what their rows stand for."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from emolib import int8, melody, notes
from tests.mididata import random_generator


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python (numba's settings are read once per process), ``env`` added."""
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def threads():
    """Set the kernels' thread count; one thread again afterwards."""
    yield int8.set_threads
    int8.set_threads(1)


def test_rows_round_to_int8_within_half_a_step_and_zero_rows_stay_zero():
    w = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32) * [[1], [0.01], [100], [1], [1], [0]]
    rows = int8.Int8Rows.of(w)
    assert rows.q.dtype == np.int8 and rows.q.shape == (1, 6, 40) and rows.scale.shape == (1, 6)
    assert (np.abs(rows.q[0, :5]).max(-1) == 127).all()  # each row uses the full range, whatever its size
    err = np.abs(rows.dequantised()[0] - w)
    assert (err <= rows.scale[0, :, None] / 2 + 1e-6 * np.abs(w)).all()
    assert (rows.dequantised()[0, 5] == 0).all() and np.isfinite(rows.scale).all()
    again = int8.Int8Rows.of(rows.dequantised()[0].astype(np.float16))  # as a bundle stores them (float16)
    assert np.array_equal(again.q, rows.q)  # a saved, reloaded model keeps its rows


def test_products_are_the_rows_float_product_and_the_same_on_one_thread_or_two(threads):
    rng = np.random.default_rng(1)
    w = int8.Int8Rows.of(rng.standard_normal((2, 96, 50)).astype(np.float32))
    x, offset = rng.uniform(-1, 1, (2, 50)).astype(np.float32), rng.standard_normal((2, 96)).astype(np.float32)
    want = np.einsum("srm,sm->sr", w.dequantised().astype(np.float64), x) + offset
    threads(1)
    one = int8.matvec(w, offset, x)
    threads(2)
    two = int8.matvec(w, offset, x)
    np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-5)
    assert one.dtype == np.float32 and np.array_equal(one, two)
    single = int8.Int8Rows(w.q[:1], w.scale[:1])  # a stack of one takes and gives plain vectors
    assert np.array_equal(int8.matvec(single, offset[0], x[0]), two[0])
    big = int8.Int8Rows.of(rng.standard_normal((2, 1536, 768)).astype(np.float32))  # a guided pair's size
    x = rng.uniform(-1, 1, (2, 768)).astype(np.float32)
    threads(2)
    two = int8.matvec(big, np.zeros((2, 1536)), x)
    threads(1)
    assert np.array_equal(int8.matvec(big, np.zeros((2, 1536)), x), two)
    with pytest.raises(ValueError, match="given"):  # numba checks no bounds: a wrong shape must not read past
        int8.matvec(single, offset[0], x[0, :40])
    with pytest.raises(ValueError, match="offset"):
        int8.matvec(w, offset[0], x[:, :50])


def test_the_blas_count_sets_the_kernels_threads_at_most_two(threads):
    from emolib import blas
    before = blas._count()
    try:
        assert blas._set_count(1) == 1 and int8._threads[0] == 1  # a piece on one thread: the serial kernel
        count = blas._set_count(8)
        assert int8._threads[0] == max(1, min(2, count, numba.config.NUMBA_NUM_THREADS))
    finally:
        blas._set_count(before)


def test_the_lstm_cell_is_kerass_on_the_rows():
    rng = np.random.default_rng(2)
    n = 8
    w = int8.Int8Rows.of(rng.standard_normal((4 * n, 2 * n)).astype(np.float32))
    given, c = rng.uniform(-1, 1, 2 * n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(4 * n).astype(np.float32)
    z = w.dequantised()[0] @ given + bias
    i, f, g, o = (z[k * n:(k + 1) * n] for k in range(4))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_want = sig(f) * c + sig(i) * np.tanh(g)
    h, c_new = int8.lstm_cell(w, bias, given, c)
    np.testing.assert_allclose(c_new, c_want, atol=1e-5)
    np.testing.assert_allclose(h, sig(o) * np.tanh(c_want), atol=1e-5)
    assert h.shape == c_new.shape == (n,)


def test_a_generator_plays_its_rows_and_keeps_the_weights_as_trained(tmp_path):
    trained = random_generator(seed=6).weights
    gen = melody.MelodyGenerator(trained, random_generator(seed=6).config, random_generator(seed=6).primers)
    played = gen.played_weights
    rows, _ = gen._lstm[1]
    assert np.array_equal(np.concatenate([played["lstm_1/0"], played["lstm_1/1"]]).T, rows.dequantised()[0])
    assert np.array_equal(played["lstm_0/1"].T, gen._lstm[0][0].dequantised()[0])
    h = gen.config.head_units
    from_h = gen._from_h.dequantised()[0].T
    for j, f in enumerate(notes.TOKEN_FIELDS):  # the heads' shared input layer, one slice per part
        assert np.array_equal(played[f"{f}_from_h/0"], from_h[:, j * h:(j + 1) * h])
    for k in ("lstm_0/1", "lstm_1/0", "pitch_from_h/0"):  # training and saving start from the weights as trained
        assert np.array_equal(gen.weights[k], trained[k]) and not np.array_equal(played[k], trained[k])
    melody.save_generator(tmp_path, gen.weights, gen.config, gen.primers, ["a.mid"] * len(gen.primers))
    back = melody.load_generator(None, tmp_path)  # float16 on disk: its rows stay within a step of these
    for (a, _), (b, _) in zip(gen._lstm, back._lstm):
        assert np.abs(a.q.astype(int) - b.q).max() <= 1 and (a.q == b.q).mean() > 0.9
    again = melody.MelodyGenerator(played, gen.config, gen.primers)  # rows of the played weights: the same rows
    assert all(np.array_equal(a.q, b.q) for (a, _), (b, _) in zip(gen._lstm, again._lstm))
    assert np.array_equal(gen._from_h.q, again._from_h.q)


def test_products_from_two_python_threads_at_once_under_numbas_fallback_threading_layer():
    """numba's workqueue layer (used where neither OpenMP nor TBB loads) aborts the process when two
    threads launch a parallel kernel at once; overlapping pieces (the app's warm-up) must not."""
    code = """
import threading
import numpy as np
from emolib import int8
int8.set_threads(2)
rng = np.random.default_rng(0)
w = int8.Int8Rows.of(rng.standard_normal((2, 1536, 768)).astype(np.float32))
x, b = rng.standard_normal((2, 768)).astype(np.float32), np.zeros((2, 1536), np.float32)
want = int8.matvec(w, b, x)
bad = []
def work():
    for _ in range(300):
        if not np.array_equal(int8.matvec(w, b, x), want):
            bad.append(1)
threads = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
import numba
print(numba.threading_layer(), len(bad))
"""
    done = _python(code, NUMBA_THREADING_LAYER="workqueue")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["workqueue", "0"]


def test_kernels_load_and_run_where_no_cache_can_be_written():
    """A read-only install run by a user without a writable home: numba finds nowhere to write its
    cache (here: no cache locator at all, as numba sees it then). Plain ``njit(cache=True)`` fails at
    import there; the kernels compile in the process instead."""
    nowhere = ("import numba.core.caching as caching\n"  # the class's name in numba 0.68; _CacheImpl before
               "(getattr(caching, 'CacheImpl', None) or caching._CacheImpl)._locator_classes = []\n")
    plain = _python(nowhere + "from numba import njit\nnjit(cache=True)(lambda: 0)")
    assert plain.returncode != 0 and "cannot cache function" in plain.stderr  # the failure is reproduced
    code = nowhere + """
import numpy as np
from emolib import int8, sampling
w = int8.Int8Rows.of(np.eye(3, dtype=np.float32))
print(int8.matvec(w, np.ones(3), np.arange(3.0)).tolist(), sampling._nucleus(np.array([0.0, 9.0, 0.0]), 0.9, 0.5),
      type(int8._rows_serial._cache).__name__, type(sampling._nucleus._cache).__name__)
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1.0,", "2.0,", "3.0]", "1", "NullCache", "NullCache"]
