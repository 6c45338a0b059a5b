"""The pipeline's queue helpers: gather a batch with one bounded wait, and put without blocking past a stop."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

#: Put on a queue after its last item: the consuming stage finishes its batch and ends.
DONE = object()


def next_batch(source: queue.Queue[Any], size: int, wait_s: float) -> tuple[list[Any], bool]:
    """Up to ``size`` items: block for the first, then wait at most ``wait_s`` for more. -> (items, source done)."""
    first = source.get()
    if first is DONE:
        return [], True
    batch = [first]
    deadline = time.monotonic() + wait_s
    while len(batch) < size:
        remaining = deadline - time.monotonic()
        try:
            item = source.get(timeout=max(0.0, remaining)) if remaining > 0 else source.get_nowait()
        except queue.Empty:
            break
        if item is DONE:
            return batch, True
        batch.append(item)
    return batch, False


def put(target: queue.Queue[Any], item: object, stop: threading.Event) -> None:
    """Put ``item``, waiting while ``target`` is full; after ``stop`` only :data:`DONE` is still delivered."""
    while True:
        try:
            target.put(item, timeout=0.5)
            return
        except queue.Full:
            if stop.is_set() and item is not DONE:
                return
