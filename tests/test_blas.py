"""BLAS threads for the per-note products (emolib.blas): the choice, and pieces the same either way."""
import hashlib
import subprocess
import sys
import time
from typing import ClassVar

import pytest

from emolib import blas, guidance, steer


class FakeClock:
    """perf_counter for ``Threads``: each note takes ``per_note[threads]`` seconds."""

    def __init__(self, per_note: dict[int, float]):
        self.now, self.per_note, self.threads = 0.0, per_note, None

    def __call__(self) -> float:
        return self.now

    def play(self, threads: blas.Threads, notes: int) -> list[int]:
        """Call ``note()`` before each of ``notes`` notes; the thread count each note ran on."""
        used = []
        for _ in range(notes):
            threads.note()
            used.append(threads.threads)
            self.now += self.per_note[threads.threads]
        return used


@pytest.fixture
def clock(monkeypatch):
    def make(per_note):
        fake = FakeClock(per_note)
        monkeypatch.setattr(blas.time, "perf_counter", fake)
        monkeypatch.setattr(blas, "others_running", lambda: 0)
        return fake
    return make


def test_two_threads_are_kept_when_they_are_faster(clock):
    fake = clock({1: 0.3e-3, 2: 0.2e-3})
    with blas.Threads(most=2, probe=8) as threads:
        used = fake.play(threads, 100)
    assert used[:8] == [1] * 8  # eight notes timed on one thread (the first call starts the clock)
    assert used[8:16] == [2] * 8 and set(used[16:]) == {2}
    assert threads.timed == pytest.approx({1: 8 * 0.3e-3, 2: 8 * 0.2e-3})


def test_a_slower_trial_of_two_threads_stops_at_once_and_one_thread_plays_on(clock):
    fake = clock({1: 0.3e-3, 2: 5e-3})  # a busy machine: each split product waits for a time slice
    with blas.Threads(most=2, probe=8) as threads:
        used = fake.play(threads, 100)
    assert used[8] == 2 and used.count(2) == 1  # 5 ms for one note: more than eight on one thread
    assert set(used[9:]) == {1} and threads.threads == 1


def test_one_thread_when_another_process_is_running(monkeypatch):
    monkeypatch.setattr(blas, "others_running", lambda: 1)
    threads = blas.Threads(most=2)
    assert threads.threads == 1 and threads.trials == []


def test_an_explicit_thread_setting_is_the_most_used(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # what `emolib app` sets in each kernel
    assert blas.most_threads() == 1
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    assert blas.most_threads() == 2  # products this small gain nothing from more
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= blas.most_threads() <= 2


def test_the_thread_count_is_restored_after_a_piece():
    before = [info["num_threads"] for info in blas._controller().info()]
    with blas.Threads(most=2):
        pass
    with blas.Threads(most=1):
        assert {info["num_threads"] for info in blas._controller().info()} == {1}
    assert [info["num_threads"] for info in blas._controller().info()] == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="others_running reads /proc (Linux)")
def test_a_spinning_process_is_seen_as_running():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        seen = [blas.others_running() for _ in range(20)]
    finally:
        spinner.kill()
        spinner.wait()
    assert max(n or 0 for n in seen) >= 1


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
