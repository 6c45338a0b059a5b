"""CPU threads per request: one intra-op thread per interactive decode, all cores for encodes and batches.

A click's decode is ~4 GFLOP of small ops: split over two OpenMP threads it gains little on an idle machine and
loses badly on a busy one (spin-waiting threads when the cores are shared with an encoder, Label Studio or other
annotators' decodes: measured 2-4x slower on the 2-core machines). So each decode runs on one thread and as many
decodes as cores run at once. ``torch.set_num_threads`` is per calling thread under OpenMP, so this is set on the
worker thread around each piece of work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: Intra-op threads for one interactive decode.
DECODE_THREADS = 1


def cpu_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
