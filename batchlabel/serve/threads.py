"""CPU threads per request: the cores are shared out among the decodes in flight, never oversubscribed.

A click's decode is ~3 GFLOP of small ops. Alone on an idle machine it is faster on all cores (LiteMedSAM box on
2 cores: about 1.4x faster than on one); with other decodes in flight, threads beyond the free cores only spin-wait
against each other (measured 2-4x slower on the 2-core machines). :class:`CoreBudget` hands each decode the free
cores divided by the decodes that want them (at least one; a decode with no free core waits), so one annotator gets
every core and eight annotators get one each. ``torch.set_num_threads`` is per calling thread under OpenMP, so the
count is set on the worker thread around each piece of work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from batchlabel.config import cpu_cores

#: Intra-op threads for one interactive decode when others are in flight (the minimum share).
DECODE_THREADS = 1


def share(free: int, waiting: int, want: int) -> int:
    """Cores one decode takes: ``free`` cores split over itself and ``waiting`` others, capped at ``want``, >= 1.

    Args:
        free: cores not held by a running decode (>= 1 when called).
        waiting: other decodes waiting for cores right now.
        want: the most threads this decode can use.
    """
    return max(1, min(want, free // (waiting + 1)))


class CoreBudget:
    """A counting semaphore over cores where one holder may take several: see the module docstring.

    Args:
        cores: cores to share out (default :func:`cpu_cores`).

    Thread-safe and first come, first served: ``with budget.take() as threads:`` queues behind the decodes that
    asked earlier, blocks until it is first in line and a core is free, and yields how many intra-op threads the
    block may use; the sum over holders never exceeds ``cores``. (Without the queue, a woken waiter raced every
    newcomer and an unlucky click could wait many decodes long: the 8-client p99 was 3-4x the p50.)
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = max(1, cores or cpu_cores())
        self._free = self.cores
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def free(self) -> int:
        """Cores not held right now."""
        with self._cond:
            return self._free

    @property
    def waiting(self) -> int:
        """Decodes queued for cores right now."""
        with self._cond:
            return len(self._queue)

    @contextmanager
    def take(self, want: int | None = None) -> Iterator[int]:
        """Hold a share of the cores (at most ``want``, default all) for the block; yields the share."""
        limit = self.cores if want is None else max(1, want)
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._free == 0:
                    self._cond.wait()
            finally:
                self._queue.remove(ticket)
                if self._queue:
                    self._cond.notify_all()  # the next in line may take what is left (or is first now)
            count = share(self._free, len(self._queue), limit)
            self._free -= count
        try:
            yield count
        finally:
            with self._cond:
                self._free += count
                self._cond.notify_all()


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads on the calling thread, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)
