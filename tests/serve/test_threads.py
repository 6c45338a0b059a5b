"""batchlabel.serve.threads: the core budget shares cores among decodes in flight without oversubscribing."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from batchlabel.serve.threads import CoreBudget, share, torch_threads


@pytest.mark.parametrize(
    ("free", "waiting", "want", "expected"),
    [(2, 0, 2, 2), (2, 1, 2, 1), (1, 0, 2, 1), (8, 3, 8, 2), (8, 0, 4, 4), (3, 5, 3, 1)],
)
def test_share(free: int, waiting: int, want: int, expected: int) -> None:
    assert share(free, waiting, want) == expected


def test_alone_takes_every_core_and_gives_them_back() -> None:
    budget = CoreBudget(2)
    with budget.take() as threads:
        assert threads == 2 and budget.free == 0
    assert budget.free == 2
    with budget.take(want=1) as threads:
        assert threads == 1 and budget.free == 1
        with budget.take() as second:  # the other core, not more
            assert second == 1 and budget.free == 0
    assert budget.free == 2


def test_concurrent_decodes_never_hold_more_than_the_cores() -> None:
    cores = 2
    budget = CoreBudget(cores)
    lock = threading.Lock()
    held = 0
    peak = 0
    shares: list[int] = []
    start = threading.Barrier(8)

    def decode() -> None:
        nonlocal held, peak
        start.wait()
        for _ in range(5):
            with budget.take() as threads:
                with lock:
                    held += threads
                    peak = max(peak, held)
                    shares.append(threads)
                time.sleep(0.002)
                with lock:
                    held -= threads

    workers = [threading.Thread(target=decode) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert len(shares) == 40 and peak <= cores and budget.free == cores
    assert shares.count(1) > shares.count(2)  # with 8 annotators each decode mostly runs on one core


def test_waiting_decodes_are_served_first_come_first_served() -> None:
    budget = CoreBudget(1)  # one holder at a time: the order of holding is the order of serving
    order: list[int] = []

    def decode(index: int) -> None:
        with budget.take():
            order.append(index)
            time.sleep(0.005)

    workers = []
    with budget.take():  # every core held: the decodes queue up in the order they ask
        for index in range(5):
            worker = threading.Thread(target=decode, args=(index,))
            worker.start()
            workers.append(worker)
            deadline = time.monotonic() + 5
            while budget.waiting <= index and time.monotonic() < deadline:
                time.sleep(0.001)
        assert budget.waiting == 5
    for worker in workers:
        worker.join(10)
    assert order == [0, 1, 2, 3, 4]
    assert budget.free == 1 and budget.waiting == 0


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
