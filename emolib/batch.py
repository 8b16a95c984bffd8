"""A crash-tolerant process pool: many independent jobs, results as they finish, a dead worker costs one job.

Generic: a job is any picklable value, ``work(job)`` runs in a spawned worker process (a
module-level function, importable by the worker), and ``finish(job, result, error)`` is called in
the parent exactly once per job, with the result or with a one-line error. A worker that dies
(a decoder crash, the OOM killer) fails only the job it was running; workers exit on their own
when the parent dies (no orphans).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["WORKER_DIED", "cpu_count", "run_pool"]

Job = TypeVar("Job")
#: The error a job gets when its worker process died while running it.
WORKER_DIED = "the worker process died (crash or out of memory) on this file"


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity / container limits where visible)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """Pool initialiser: run the caller's initialiser, and exit if the parent dies (no orphaned workers)."""
    if initializer is not None:
        initializer(*initargs)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="emolib-parent-watch").start()


def _run_round(jobs: list[Job], size: int, work: Callable[[Job], Any],
               finish: Callable[[Job, Any, str | None], None], initializer: Callable[..., Any] | None,
               initargs: tuple[Any, ...]) -> list[Job]:
    """One pool of ``size`` workers over ``jobs``; finishes what completes, returns the jobs a dead worker broke."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the caller may hold TensorFlow/onnxruntime threads that fork would corrupt
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(), initializer, initargs))
    futures = {pool.submit(work, job): k for k, job in enumerate(jobs)}
    broken: list[int] = []
    try:
        for future in as_completed(futures):
            k = futures[future]
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append(k)
                continue
            except Exception as err:  # the job raised: its error, the batch goes on
                finish(jobs[k], None, f"{type(err).__name__}: {err}")
                continue
            finish(jobs[k], result, None)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [jobs[k] for k in sorted(broken)]  # back to submission order


def run_pool(jobs: Sequence[Job], workers: int, work: Callable[[Job], Any],
             finish: Callable[[Job, Any, str | None], None], *, initializer: Callable[..., Any] | None = None,
             initargs: tuple[Any, ...] = ()) -> None:
    """Run ``work`` over ``jobs`` in up to ``workers`` spawned processes; ``finish(job, result, error)`` each.

    ``initializer(*initargs)`` runs once in every worker (load a model once per process). A worker
    that dies breaks the pool and every unfinished job with it. Those are rerun in order on a
    single worker, where the job running at the next death is certainly the culprit: it alone
    gets the error :data:`WORKER_DIED`, and the rest continue in parallel.
    """
    pending, parallel = list(jobs), True
    while pending:
        size = min(workers, len(pending)) if parallel else 1
        broken = _run_round(pending, size, work, finish, initializer, initargs)
        if broken and not parallel:  # one worker runs jobs in order: the first unfinished one killed it
            finish(broken.pop(0), None, WORKER_DIED)
        pending, parallel = broken, not parallel
