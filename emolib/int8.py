"""The note LSTM's large products in int8: a quarter of the bytes to read per generated note.

A generated note's cost is dominated by reading the LSTM's matrices (two LSTMs' 14 MB in float32
when guided): on a CPU with slow memory that, not arithmetic, sets the speed. Each row of those
matrices is stored as int8 with one float32 scale (``Int8Rows``): the next-note distribution moves by
a KL of 0.0004 nats per note (0.004 guided), and pieces cannot be told from float32 ones
(models/melody/README.md, "int8 products"). ``dequantised`` gives the float32 values those rows
stand for, so the Keras model built from them computes what the kernels do (to 1e-4, tested). The
kernels are compiled by numba (``compiled``: cached on disk after the first use, where a cache can
be written) and split a product's rows over the threads ``set_threads`` allows; each row is summed
by one thread in a fixed order, so a result is the same bit for bit on one thread or two.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import njit, prange

__all__ = ["Int8Rows", "compiled", "set_threads", "lstm_cell", "matvec"]


def compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """numba's ``njit(**options)``, its machine code cached on disk where numba can write a cache
    (beside the module, or in the user's cache folder) and compiled anew in each process where it
    cannot: a read-only install run by a user without a writable home would otherwise fail at import
    ("cannot cache function ...: no locator available")."""
    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError as err:
            if "cannot cache" not in str(err):
                raise
            return njit(cache=False, **options)(fn)
    return wrap


@dataclass(frozen=True, eq=False)
class Int8Rows:
    """Matrices (a stack of ``S``, each ``R`` rows x ``M`` columns) as int8 rows times a scale per row."""

    q: np.ndarray  # (S, R, M) int8
    scale: np.ndarray  # (S, R) float32

    @classmethod
    def of(cls, w: np.ndarray) -> Int8Rows:
        """Rows of ``w`` ((R, M) or a stack (S, R, M)) rounded to 255 levels each, symmetric about 0."""
        w = np.asarray(w, np.float32)
        w = w[None] if w.ndim == 2 else w
        scale = np.abs(w).max(-1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(w / scale[..., None]), -127, 127).astype(np.int8)
        return cls(np.ascontiguousarray(q), np.ascontiguousarray(scale, np.float32))

    @classmethod
    def stack(cls, parts: list[Int8Rows]) -> Int8Rows:
        """One stack of several (each of stack size 1 or more) with the same shape."""
        return cls(np.ascontiguousarray(np.concatenate([p.q for p in parts])),
                   np.ascontiguousarray(np.concatenate([p.scale for p in parts])))

    def dequantised(self) -> np.ndarray:
        """The float32 values the rows stand for, (S, R, M)."""
        return self.q.astype(np.float32) * self.scale[..., None]


_threads = [1]  # the kernels' thread count (set_threads); 1: the serial kernel
_launch = threading.Lock()  # held during a parallel kernel (matvec)


def set_threads(threads: int) -> None:
    """Run the kernels on ``threads`` threads, at most two and at most numba's pool (``emolib.blas``
    sets it with the BLAS count). The first time above one, the parallel kernel is loaded here, so
    that its loading (or compiling) is not timed as part of a piece's trial of two threads."""
    count = max(1, min(int(threads), 2, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if count > 1 and not _rows_parallel.signatures:
        tiny = np.zeros((1, 1, 1), np.int8), np.ones((1, 1), np.float32)
        _rows_parallel(tiny[0], tiny[1], tiny[1], tiny[1], np.empty((1, 1), np.float32))
    _threads[0] = count


@compiled(fastmath=True, nogil=True, inline="always")
def _row(q, scale, offset, given, s, r):  # pragma: no cover  (compiled)
    """One output: row ``r`` of matrix ``s`` times ``given[s]``, scaled, plus its offset."""
    acc = np.float32(0.0)
    for j in range(q.shape[2]):
        acc += np.float32(q[s, r, j]) * given[s, j]
    return acc * scale[s, r] + offset[s, r]


@compiled(fastmath=True, nogil=True)
def _rows_serial(q, scale, offset, given, out):  # pragma: no cover  (compiled)
    """``out[s, r]`` for every matrix and row, on the calling thread."""
    for t in range(q.shape[0] * q.shape[1]):
        s = t // q.shape[1]
        r = t - s * q.shape[1]
        out[s, r] = _row(q, scale, offset, given, s, r)


@compiled(fastmath=True, nogil=True, parallel=True)
def _rows_parallel(q, scale, offset, given, out):  # pragma: no cover  (compiled)
    """``out[s, r]`` for every matrix and row, the rows split over numba's threads (each row's sum
    as in ``_rows_serial``: the same result)."""
    for t in prange(q.shape[0] * q.shape[1]):
        s = t // q.shape[1]
        r = t - s * q.shape[1]
        out[s, r] = _row(q, scale, offset, given, s, r)


def matvec(w: Int8Rows, offset: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``w @ given + offset`` for each matrix of the stack; ``given`` and ``offset``: (S, M) and
    (S, R), or (M,) and (R,) for a stack of one."""
    stack, rows, columns = w.q.shape
    offset, given = np.asarray(offset, np.float32), np.asarray(given, np.float32)
    if given.shape[-1] != columns or offset.shape[-1] != rows or given.size != stack * columns \
            or offset.size != stack * rows:
        raise ValueError(f"matvec: {stack} x {rows} x {columns} rows, given {given.shape}, offset {offset.shape}")
    out = np.empty((stack, rows), np.float32)
    args = (w.q, w.scale, offset.reshape(stack, rows), given.reshape(stack, columns), out)
    # one parallel launch at a time: numba's fallback threading layer (workqueue) aborts the process
    # when two Python threads launch at once; a product that finds it busy runs serially (same result)
    if _threads[0] > 1 and _launch.acquire(blocking=False):
        try:
            numba.set_num_threads(_threads[0])  # numba's count is per Python thread: set it for this one
            _rows_parallel(*args)
        finally:
            _launch.release()
    else:
        _rows_serial(*args)
    return out if np.ndim(given) > 1 else out[0]


def lstm_cell(w: Int8Rows, offset: np.ndarray, given: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step: gates ``w @ given + offset`` (the bias, plus any input term), then Keras's cell
    update of ``c`` (in numpy, whose vectorised tanh is faster than numba's); returns the new (h, c),
    shaped as ``c``."""
    z = matvec(w, offset, given).reshape(*np.shape(c)[:-1], -1)
    n = np.shape(c)[-1]
    gates = 0.5 * (np.tanh(0.5 * z) + 1.0)  # the logistic function, overflow-free: i, f, (unused), o; g is a tanh
    c = gates[..., n:2 * n] * c + gates[..., :n] * np.tanh(z[..., 2 * n:3 * n])
    return gates[..., 3 * n:] * np.tanh(c), c
