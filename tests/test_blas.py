"""BLAS threads for the per-note products (emolib.blas): the choice, and pieces the same either way."""
import hashlib
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


def test_the_blas_setting_and_the_callers_limit_cap_the_threads():
    with threadpool_limits(limits=1, user_api="blas"):  # as OPENBLAS_NUM_THREADS=1 (`emolib app`) leaves it
        assert blas.most_threads() == 1
        assert blas.Threads().trials == []
    with threadpool_limits(limits=8, user_api="blas"):
        assert blas.most_threads() <= 2  # products this small gain nothing from more


def test_the_count_is_restored_after_a_piece_even_one_that_fails(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with threadpool_limits(limits=3, user_api="blas"):
        with pytest.raises(RuntimeError), blas.Threads(most=2, probe=4) as threads:
            fake.play(threads, 10)
            assert blas_threads() == {2}
            raise RuntimeError("a piece that fails half way")
        assert blas_threads() == {3}


def test_overlapping_pieces_go_on_one_thread_and_the_count_is_restored(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with threadpool_limits(limits=3, user_api="blas"):
        first = blas.Threads(most=2, probe=4).__enter__()
        second = blas.Threads(most=2, probe=4).__enter__()
        fake.play(first, 10)
        assert first.threads == second.threads == 1 and blas_threads() == {1}
        first.__exit__(None, None, None)
        assert blas_threads() == {1}  # the second piece goes on, still on one thread
        second.__exit__(None, None, None)
        assert blas_threads() == {3}


class OnThreads(blas.Threads):
    """A whole piece on ``count`` threads, no trial; the counts the pieces ran on go to ``seen``."""

    count = 1
    seen: ClassVar[set[int]] = set()

    def __init__(self) -> None:
        super().__init__(most=1)
        self.threads = self.count

    def __enter__(self) -> blas.Threads:
        entered = super().__enter__()
        self.seen.update(info["num_threads"] for info in blas._controller().info())
        return entered


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
