"""BLAS threads for the per-note products (emolib.blas): the choice, and pieces the same either way."""
import hashlib
import os
import threading
from typing import ClassVar

import pytest
from threadpoolctl import threadpool_limits

from emolib import blas, guidance, steer


class FakeClock:
    """The trial's clock: each LSTM step takes ``per_step[threads]`` seconds."""

    def __init__(self, per_step: dict[int, float]):
        self.now, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.now

    def play(self, threads: blas.Threads, steps: int) -> list[int]:
        """Run ``steps`` steps through ``threads``; the thread count each ran on."""
        used: list[int] = []

        def step() -> None:
            used.append(threads.threads)
            self.now += self.per_step[threads.threads]

        for _ in range(steps):
            threads.run(step)
        return used


@pytest.fixture(autouse=True)
def keep_the_count():
    """Each test leaves the process's BLAS thread count as it found it."""
    before = blas._count()
    yield
    blas._active.clear()  # (a failed overlap test must not crowd the tests after it)
    blas._set_count(before)


@pytest.fixture
def clock(monkeypatch):
    def make(per_step):
        fake = FakeClock(per_step)
        monkeypatch.setattr(blas, "_clock", fake)
        monkeypatch.setattr(blas, "others_running", lambda: 0)
        return fake
    return make


def blas_threads() -> set[int]:
    return {info["num_threads"] for info in blas._controller().info()}


def test_two_threads_are_kept_when_they_are_faster(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with blas.Threads(most=2, probe=8) as threads:
        used = fake.play(threads, 100)
        assert blas_threads() == {2}
    assert used[:8] == [1] * 8 and used[8:16] == [2] * 8 and set(used[16:]) == {2}
    assert threads.timed == pytest.approx({1: 8 * 0.3e-3, 2: 8 * 0.2e-3})


def test_a_slower_trial_of_two_threads_stops_at_once_and_one_thread_runs_on(clock):
    fake = clock({1: 0.3e-3, 2: 5e-3})  # a busy machine: each split product waits for a time slice
    with blas.Threads(most=2, probe=8) as threads:
        used = fake.play(threads, 100)
        assert blas_threads() == {1}
    assert used[8] == 2 and used.count(2) == 1  # 5 ms for one step: more than eight on one thread
    assert threads.threads == 1


def test_one_thread_when_another_process_is_running(monkeypatch):
    monkeypatch.setattr(blas, "others_running", lambda: 1)
    threads = blas.Threads(most=2)
    assert threads.threads == 1 and threads.trials == []


def test_the_runnable_count_leaves_out_this_processs_own_threads():
    # 3 runnable on the system; this process has two threads running (one a spinning BLAS thread)
    assert blas.runnable_elsewhere("0.52 0.40 0.31 3/412 9001", ["R", "R", "S"]) == 1
    assert blas.runnable_elsewhere("0.52 0.40 0.31 2/412 9001", ["R", "R", "S"]) == 0
    assert blas.runnable_elsewhere("0.52 0.40 0.31 1/412 9001", ["R", "S", "S"]) == 0


def test_the_blas_setting_and_the_callers_limit_cap_the_threads(monkeypatch):
    monkeypatch.setattr(blas, "others_running", lambda: 0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with threadpool_limits(limits=1, user_api="blas"):  # as OPENBLAS_NUM_THREADS=1 (`emolib app`) leaves it
        assert blas.most_threads() == 1
        assert blas.Threads().trials == []
    with threadpool_limits(limits=8, user_api="blas"):
        assert blas.most_threads() == min(2, cores)  # products this small gain nothing from more


def test_the_count_is_restored_after_a_piece_even_one_that_fails(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with threadpool_limits(limits=3, user_api="blas"):
        with pytest.raises(RuntimeError), blas.Threads(most=2, probe=4) as threads:
            fake.play(threads, 10)
            assert blas_threads() == {2}
            raise RuntimeError("a piece that fails half way")
        assert blas_threads() == {3}


@pytest.mark.parametrize("first_ends_first", [True, False])
def test_overlapping_pieces_go_on_one_thread_and_the_count_is_restored(clock, first_ends_first):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with threadpool_limits(limits=3, user_api="blas"):
        first = blas.Threads(most=2, probe=4).__enter__()
        fake.play(first, 10)
        assert blas_threads() == {2}  # settled on two
        second = blas.Threads(most=2, probe=4).__enter__()
        fake.play(first, 1)
        fake.play(second, 1)
        assert first.threads == second.threads == 1 and blas_threads() == {1}
        ends = [first, second] if first_ends_first else [second, first]
        ends[0].__exit__(None, None, None)
        fake.play(ends[1], 3)
        assert blas_threads() == {1}  # the other piece goes on, still on one thread
        ends[1].__exit__(None, None, None)
        assert blas_threads() == {3}


def test_a_piece_in_another_python_thread_joins_in_and_the_last_restores_the_count(clock):
    """threadpoolctl lets one Python thread at a time set OpenBLAS's count."""
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    blas._set_count(3)
    first = blas.Threads(most=2, probe=4).__enter__()
    fake.play(first, 10)
    assert blas_threads() == {2}
    entered, go_on, seen = threading.Event(), threading.Event(), {}

    def other() -> None:
        with blas.Threads(most=2, probe=4) as second:
            entered.set()
            go_on.wait(10)
            second.run(lambda: None)
            seen["second"] = (second.threads, blas_threads())

    worker = threading.Thread(target=other)
    worker.start()
    assert entered.wait(10)
    fake.play(first, 1)  # the first piece's next step: one thread
    assert first.threads == 1 and blas_threads() == {1}
    first.__exit__(None, None, None)  # the first ends while the other goes on
    go_on.set()
    worker.join(10)
    assert seen["second"] == (1, {1})
    assert blas_threads() == {3}  # restored when the last piece ended, by its thread


class OnThreads(blas.Threads):
    """A whole piece on ``count`` threads, no trial; the counts the pieces ran on go to ``seen``."""

    count = 1
    seen: ClassVar[set[int]] = set()

    def __init__(self) -> None:
        super().__init__(most=1)
        self.threads = self.count

    def __enter__(self) -> blas.Threads:
        entered = super().__enter__()
        self.seen.update(blas_threads())
        return entered


def test_a_callers_own_limit_holds_through_pieces_in_its_thread_and_in_others(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    start = blas._set_count(1)
    with threadpool_limits(limits=2, user_api="blas"):  # the caller's scope, in this thread
        with blas.Threads(most=2, probe=4) as piece:
            fake.play(piece, 10)
        assert blas_threads() == {2}

        seen: set[int] = set()

        def other() -> None:
            with blas.Threads(most=2, probe=4) as elsewhere:
                for _ in range(10):
                    elsewhere.run(lambda: seen.update(blas_threads()))

        worker = threading.Thread(target=other)
        worker.start()
        worker.join(10)
        assert seen == {2} and blas_threads() == {2}  # a piece in another thread did not take the count
    assert blas_threads() == {start}


@pytest.mark.skipif("openblas" not in {i["internal_api"] for i in blas._controller().info()},
                    reason="pieces the same on any thread count is OpenBLAS's splitting by outputs")
def test_pieces_are_the_same_on_one_thread_and_on_two(monkeypatch):
    """The piece a seed gives must not depend on how busy the machine was."""
    monkeypatch.setattr(blas, "Threads", OnThreads)

    def digest(threads: int) -> str:
        monkeypatch.setattr(OnThreads, "count", threads)
        h = hashlib.sha1()
        for emotion in ("happy", "angry"):
            gen = guidance.generator(emotion, None)
            for seed in range(2):
                midi = gen.generate(seconds=20, seed=seed, steer=steer.hook(emotion, steer.steering_for(emotion)))
                h.update(repr([(n.pitch, n.start, n.end, n.velocity) for n in midi.instruments[0].notes]).encode())
        return h.hexdigest()

    assert digest(1) == digest(2)
    assert OnThreads.seen == {1, 2}  # the pieces did run on one thread and on two
