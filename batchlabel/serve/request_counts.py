"""Interactive requests per task and label, counted by ``batchlabel serve`` and kept in the cache for the report.

One SQLite file (``<cache.dir>/interactive-requests.sqlite3``, WAL) with one row per (project, task, label): the
number of smart-tool requests answered for that task with that label. ``batchlabel report`` divides them by the
reviewed objects of the label (requests per object). The project is Label Studio's project id (the part of
``/predict``'s ``project`` before the dot, ``""`` when Label Studio sent none).

Counting never sits in a click's path: :meth:`InteractiveRequestCounts.record` only puts the count on a bounded
queue (:data:`MAX_PENDING_COUNTS`); one writer thread adds what is queued in one transaction. A count is dropped,
with a warning (once per run of failures, then the number dropped when counting works again), when the queue is
full, when the file stays locked by another process for :data:`WRITE_BUSY_TIMEOUT_S`, when the file is not a
database, or when the task id is not a 64-bit integer. The next counts are written as soon as the file can be.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "interactive-requests.sqlite3"
#: Counts waiting for the writer thread; more are dropped (with a warning) rather than held in memory.
MAX_PENDING_COUNTS = 10_000
#: Seconds the writer thread waits for a lock another process holds before dropping what it holds (off the click path).
WRITE_BUSY_TIMEOUT_S = 1.0
#: Seconds :meth:`InteractiveRequestCounts.close` waits for the queued counts to be written.
CLOSE_TIMEOUT_S = 5.0
_SQLITE_INT_RANGE = range(-(2**63), 2**63)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactive_requests (
    project TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (project, task_id, label)
)
"""

_UPSERT = (
    "INSERT INTO interactive_requests (project, task_id, label, requests) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (project, task_id, label) DO UPDATE SET requests = requests + excluded.requests"
)

_Key = tuple[str, int, str]  # (project key, task id, label)


def project_key(project: str | None) -> str:
    """``"<id>.<created_unix>"`` (what Label Studio sends) -> ``"<id>"``; None -> ``""``."""
    return (project or "").split(".", 1)[0]


class InteractiveRequestCounts:
    """The counts file under ``cache_dir``; safe to use from several threads and processes.

    Writes go through one writer thread started by the first :meth:`record` (a reader, such as the report, starts
    none); :meth:`flush` waits for what is queued, :meth:`close` writes it and stops the thread.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pending: queue.Queue[_Key | threading.Event | None] = queue.Queue(MAX_PENDING_COUNTS)
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._dropped = 0  # counts dropped since the last successful write (the writer thread's and record's)

    def _connect(self) -> sqlite3.Connection:
        """The readers' connection (:meth:`for_project`); the writer thread has its own."""
        if self._connection is None:
            self._connection = self._open(timeout_s=10.0)
        return self._connection

    def _open(self, timeout_s: float) -> sqlite3.Connection:
        """A new connection to the file (schema created), closed again when setting it up fails."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
        except BaseException:
            connection.close()
            raise
        return connection

    def record(self, project: str | None, task_id: int, label: str) -> None:
        """Count one answered interactive request for ``task_id`` with ``label``: queued for the writer thread,
        never waiting and never raising (a counter must not cost the smart tool its answer)."""
        if task_id not in _SQLITE_INT_RANGE:
            log.warning("%s: task id %s is not a 64-bit integer; its interactive request is not counted",
                        self.path, str(task_id)[:40])
            return
        self._start_writer()
        try:
            self._pending.put_nowait((project_key(project), int(task_id), label))
        except queue.Full:
            self._drop(1, f"{MAX_PENDING_COUNTS:,} counts are waiting to be written")

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until the counts queued so far are written or dropped; False when ``timeout_s`` ran out."""
        if self._writer is None:
            return True
        done = threading.Event()
        try:
            self._pending.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def _start_writer(self) -> None:
        with self._writer_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="interactive-request-counts",
                                                daemon=True)
                self._writer.start()

    def _write_loop(self) -> None:
        """The writer thread: take what is queued, add it up, write it in one transaction, until ``None``."""
        connection: sqlite3.Connection | None = None
        try:
            while True:
                items = [self._pending.get()]
                while True:
                    try:
                        items.append(self._pending.get_nowait())
                    except queue.Empty:
                        break
                counts = Counter(item for item in items if isinstance(item, tuple))
                if counts:
                    connection = self._write(connection, counts)
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                if None in items:
                    return
        finally:
            if connection is not None:
                connection.close()

    def _write(self, connection: sqlite3.Connection | None, counts: Counter[_Key]) -> sqlite3.Connection | None:
        """Add ``counts`` to the file in one transaction; on failure drop them with a warning. Returns the
        connection to reuse (None after a failure: the next batch opens the file again)."""
        try:
            if connection is None:
                connection = self._open(timeout_s=WRITE_BUSY_TIMEOUT_S)
            with connection:  # one transaction, rolled back on error
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(_UPSERT, [(*key, n) for key, n in counts.items()])
        except (sqlite3.Error, OSError, OverflowError) as error:  # OSError: the cache folder cannot be created
            if connection is not None:
                connection.close()
            tasks = sorted({key[1] for key in counts})
            self._drop(sum(counts.values()), f"{error} (tasks {tasks[:5]}{' ...' if len(tasks) > 5 else ''})")
            return None
        if self._dropped:
            log.warning("%s: counting interactive requests again; %d count(s) were dropped", self.path,
                        self._dropped)
            self._dropped = 0
        return connection

    def _drop(self, number: int, reason: str) -> None:
        """Count ``number`` dropped counts; warn on the first of a run of failures only."""
        if not self._dropped:
            log.warning("%s: cannot count %d interactive request(s): %s; dropping counts until it can",
                        self.path, number, reason)
        self._dropped += number

    def for_project(self, project_id: int | str | None) -> dict[tuple[int, str], int] | None:
        """``{(task id, label): requests}`` of one project, or None when nothing was ever recorded for it or the file
        cannot be read (a garbled or locked file: one warning naming it; the file is left as it is)."""
        if not self.path.exists():
            return None
        try:
            with self._lock:
                rows = self._connect().execute(
                    "SELECT task_id, label, requests FROM interactive_requests WHERE project = ?",
                    (project_key(None if project_id is None else str(project_id)),),
                ).fetchall()
        except sqlite3.Error as error:
            log.warning("%s: cannot read the interactive request counts (%s); reporting without interactive request "
                        "counts (move the file away and `batchlabel serve` starts a new one)", self.path, error)
            return None
        return {(int(task), str(label)): int(count) for task, label, count in rows} or None

    def close(self) -> None:
        """Write what is queued (waiting at most :data:`CLOSE_TIMEOUT_S`), stop the writer thread, close the file."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            try:
                self._pending.put(None, timeout=CLOSE_TIMEOUT_S)
            except queue.Full:
                log.warning("%s: the interactive request counts still queued are not written", self.path)
            writer.join(CLOSE_TIMEOUT_S)
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
