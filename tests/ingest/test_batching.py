"""batchlabel.ingest.batching: one bounded wait per batch, the end marker, and puts that give up after a stop."""

from __future__ import annotations

import queue
import threading
import time

from batchlabel.ingest.batching import DONE, next_batch, put


def test_a_batch_takes_what_arrives_within_the_wait_and_stops_at_size() -> None:
    source: queue.Queue[object] = queue.Queue()
    for item in range(5):
        source.put(item)
    assert next_batch(source, 3, wait_s=0.0) == ([0, 1, 2], False)
    late = threading.Timer(0.05, source.put, args=(5,))
    late.start()
    batch, done = next_batch(source, 3, wait_s=30.0)  # 3 and 4 are there; waits for 5, returns once the batch is full
    late.join()
    assert batch == [3, 4, 5] and not done


def test_the_end_marker_ends_the_batch_and_the_stage() -> None:
    source: queue.Queue[object] = queue.Queue()
    source.put("a")
    source.put(DONE)
    assert next_batch(source, 8, wait_s=5.0) == (["a"], True)  # no wait once the marker is seen
    source.put(DONE)
    assert next_batch(source, 8, wait_s=5.0) == ([], True)


def test_put_gives_up_on_a_full_queue_after_stop_but_always_delivers_the_end_marker() -> None:
    target: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()
    put(target, "first", stop)
    stop.set()
    started = time.monotonic()
    put(target, "dropped", stop)  # full and stopped: returns instead of blocking
    assert time.monotonic() - started < 5 and target.get_nowait() == "first"
    put(target, DONE, stop)
    assert target.get_nowait() is DONE
