"""How many BLAS threads a piece's per-note products use: both cores when they pay, one when not.

A note's matrix-vector products (guided: two LSTMs' weights; the large ones as int8 rows in
``emolib.int8``, which follows the count set here, at most two) can run faster split over two idle
cores, depending on the host, but two to three times slower when another process keeps one core
busy: a split product then waits for that core's next time slice. So ``Threads`` uses one thread
while another process is running, and otherwise times a piece's first LSTM steps on one thread and
then on two and runs the rest on the faster.
OpenBLAS and the int8 kernels split a product by its outputs, so a piece is the same bit for bit on
one thread or two (tests/test_blas.py, tests/test_int8.py).
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import numpy  # noqa: F401  (loaded first: the thread controller finds only libraries already loaded)

from emolib import int8

__all__ = ["PROBE_STEPS", "Threads", "most_threads", "others_running"]

#: LSTM steps timed on each thread count at the start of a piece (a 40 s piece has 150-550).
PROBE_STEPS = 16

T = TypeVar("T")
_clock = time.perf_counter  # the trial's clock (tests replace it)
_lock = threading.Lock()
_active: list[Threads] = []  # pieces being generated in this process now
settled: list[int] = []  # the count each piece ended on, newest last (benchmarks report them; at most 1000)
_before: list[int] = [1]  # the count before the first of the pieces now running


@lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController  # finding the loaded BLAS libraries takes a while: once

    return ThreadpoolController().select(user_api="blas")


def most_threads() -> int:
    """The most BLAS threads a piece may use: at most two (more only add waiting to products this
    small), no more than the cores this process may run on, and no more than the BLAS is set to now
    (``OPENBLAS_NUM_THREADS=1``, which ``emolib app`` sets in every kernel, or a caller's
    ``threadpoolctl`` limit: the caller's choice stands)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(2, cores, _count()))


def runnable_elsewhere(loadavg: str, own_states: list[str]) -> int:
    """From ``/proc/loadavg``'s text and this process's threads' states: the runnable threads of
    other processes (the system's runnable count, less this process's own, such as a BLAS thread
    still spinning after its last product)."""
    running = int(loadavg.split()[3].split("/")[0])
    return max(running - sum(state == "R" for state in own_states), 0)


def others_running() -> int | None:
    """Threads of other processes running or ready to run right now; None where ``/proc`` does not
    tell (not Linux). In a container that sees its host's ``/proc/loadavg``, this counts the host's
    processes too, and pieces keep to one thread."""
    try:
        with open("/proc/loadavg") as fh:
            loadavg = fh.read()
        states = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue  # the thread has ended
            states.append(stat[stat.rindex(")") + 2])
        return runnable_elsewhere(loadavg, states)
    except (OSError, IndexError, ValueError):
        return None


def _count() -> int:
    """The BLAS thread count in effect (the smallest, if several BLAS libraries are loaded)."""
    return min((int(lib.get_num_threads() or 1) for lib in _controller().lib_controllers), default=1)


def _set_count(threads: int) -> int:
    """Ask the BLAS for ``threads`` threads; the count in effect after (threadpoolctl lets only one
    Python thread at a time change OpenBLAS's count: another thread's request is ignored)."""
    for lib in _controller().lib_controllers:
        lib.set_num_threads(threads)
    count = _count()
    int8.set_threads(count)
    return count


def _ownership() -> Any:
    """threadpoolctl's per-thread count of open limits (3.6+; None before): while a thread has one
    open, it keeps control of OpenBLAS's count; at zero, any thread may take it."""
    import threadpoolctl

    return getattr(threadpoolctl, "CONTROLLING_THREAD_OWNERSHIP", None)


class Threads:
    """A context for one piece: it sets the BLAS thread count, and ``run`` times the piece's LSTM
    steps, ``probe`` on one thread, then on more, and settles on the faster; the trial of more stops
    once it has taken longer than the whole one-thread trial. With one thread allowed, or another
    process running, there is nothing to try. The count is process-wide: while pieces overlap
    (threads of one process), each goes on one thread to its end, and the count from before the
    first is restored when the last ends."""

    def __init__(self, most: int | None = None, probe: int = PROBE_STEPS):
        most = most_threads() if most is None else max(1, int(most))
        if most > 1 and others_running():
            most = 1  # another process is busy: a split product would wait for its core
        self.trials = [1, most] if most > 1 else []  # counts still to time, the current one first
        self.threads = self.trials[0] if self.trials else most
        self.timed: dict[int, float] = {}  # seconds for ``probe`` steps, per count
        self.probe = max(1, int(probe))
        self.crowded = False  # another piece of this process overlaps: one thread from the next step
        self._steps, self._spent = 0, 0.0
        self._owned: Any = None

    def __enter__(self) -> Threads:
        with _lock:
            if not _active:
                _before[:] = [_count()]
            _active.append(self)
            try:
                if len(_active) > 1:
                    for piece in _active:
                        piece.trials, piece.crowded = [], True
                    self.threads = 1
                wanted = self.threads
                self.threads = _set_count(wanted)
                if self.threads != wanted:
                    self.trials = []  # another Python thread holds the count: nothing to try
                self._owned = _ownership()
                if self._owned is not None:
                    self._owned.increment()  # this thread keeps the count until the piece ends
            except BaseException:
                _active.remove(self)
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _active.remove(self)
            settled[:] = [*settled[-999:], self.threads]
            if not _active:
                _set_count(_before[0])
            if self._owned is not None:
                self._owned.decrement()  # at zero (no caller's limit open here), another thread may set it

    def run(self, step: Callable[..., T], *args: Any) -> T:
        """``step(*args)``, timed while a trial is on."""
        if self.crowded:
            with _lock:
                self.threads = _set_count(1)
                self.crowded = self.threads != 1  # (asked again until the thread holding the count has set it)
        if not self.trials:
            return step(*args)
        start = _clock()
        out = step(*args)
        self._spent += _clock() - start
        self._steps += 1
        if self._steps >= self.probe or self._spent > min(self.timed.values(), default=math.inf):
            with _lock:
                if self.trials:  # (a piece that began meanwhile may have ended the trial)
                    self.timed[self.trials.pop(0)] = self._spent * self.probe / self._steps
                    wanted = self.trials[0] if self.trials else min(self.timed, key=self.timed.__getitem__)
                    self.threads = _set_count(wanted)
                    if self.threads != wanted:
                        self.trials = []  # another Python thread took the count
            self._steps, self._spent = 0, 0.0
        return out
