"""How many BLAS threads a piece's per-note products use: both cores when they pay, one when not.

A note's matrix-vector products (guided, two LSTMs' 14 MB of weights) run about 40% faster split
over two idle cores, but three to four times slower when another process keeps one core busy: a
split product then waits for that core's next time slice. Which case holds is only known by trying,
so ``Threads`` uses one thread while another process is running, and otherwise times a piece's first
notes on one thread and then on two and plays the rest on the faster (a trial of two threads stops as
soon as it falls behind).
A product is split by its outputs, so a piece is the same bit for bit on one thread or two.
"""
from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from typing import Any

__all__ = ["PROBE_NOTES", "Threads", "most_threads", "others_running"]

#: Notes timed on each thread count at the start of a piece (a 40 s piece has 150-550).
PROBE_NOTES = 16


def most_threads() -> int:
    """The most BLAS threads a piece may use: an explicit ``OPENBLAS_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` (``emolib app`` sets 1 in every kernel: many visitors, one core each), else
    up to two of the cores this process may run on (more only add waiting to products this small)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return min(int(value), 2)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 2))


def others_running() -> int | None:
    """Threads of other processes running or ready to run right now (Linux; None elsewhere): the
    system's runnable count, less this process's own (such as a BLAS thread still spinning)."""
    try:
        with open("/proc/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue  # the thread has ended
            own += stat[stat.rindex(")") + 2] == "R"
    except (OSError, IndexError, ValueError):
        return None
    return max(running - own, 0)


@lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController  # finding the loaded BLAS libraries takes a while: once

    return ThreadpoolController().select(user_api="blas")


class Threads:
    """A context for one piece: the BLAS thread count is set on entry and restored on exit;
    ``note()``, called before each note is drawn, times ``probe`` notes on one thread, then on more,
    stopping that trial as soon as it is the slower, and settles on the faster (with one thread
    allowed, there is nothing to try)."""

    def __init__(self, most: int | None = None, probe: int = PROBE_NOTES):
        most = most_threads() if most is None else max(1, int(most))
        if most > 1 and others_running():
            most = 1  # another process is busy: a split product would wait for its core
        self.trials = [1, most] if most > 1 else []  # counts still to time, the current one first
        self.threads = self.trials[0] if self.trials else most
        self.timed: dict[int, float] = {}  # seconds for ``probe`` notes, per count
        self.probe = max(1, int(probe))
        self._notes = 0
        self._since: float | None = None
        self._limiter: Any = None

    def __enter__(self) -> Threads:
        self._limiter = _controller().limit(limits=self.threads)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None

    def note(self) -> None:
        """Count a note (the first call starts the clock: a primer's steps are not timed)."""
        if not self.trials:
            return
        now = time.perf_counter()
        if self._since is None:
            self._since = now
            return
        self._notes += 1
        spent = now - self._since
        if self._notes < self.probe and spent <= min(self.timed.values(), default=math.inf):
            return
        self.timed[self.trials.pop(0)] = spent * self.probe / self._notes  # a trial already slower stops early
        self.threads = self.trials[0] if self.trials else min(self.timed, key=self.timed.__getitem__)
        _controller().limit(limits=self.threads)
        self._notes, self._since = 0, now
