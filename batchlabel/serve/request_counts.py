"""Interactive requests per task and label, counted by ``batchlabel serve`` and kept in the cache for the report.

One SQLite file (``<cache.dir>/interactive-requests.sqlite3``, WAL) with one row per (project, task, label): the
number of smart-tool requests answered for that task with that label. ``batchlabel report`` divides them by the
reviewed objects of the label (requests per object). The project is Label Studio's project id (the part of
``/predict``'s ``project`` before the dot, ``""`` when Label Studio sent none).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "interactive-requests.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactive_requests (
    project TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (project, task_id, label)
)
"""


def project_key(project: str | None) -> str:
    """``"<id>.<created_unix>"`` (what Label Studio sends) -> ``"<id>"``; None -> ``""``."""
    return (project or "").split(".", 1)[0]


class InteractiveRequestCounts:
    """The counts file under ``cache_dir``; safe to use from several threads and processes."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
            self._connection = connection
        return self._connection

    def record(self, project: str | None, task_id: int, label: str) -> None:
        """Count one answered interactive request for ``task_id`` with ``label`` (a failure is logged, never raised:
        a counter must not fail the smart tool's answer)."""
        try:
            with self._lock:
                self._connect().execute(
                    "INSERT INTO interactive_requests (project, task_id, label, requests) VALUES (?, ?, ?, 1) "
                    "ON CONFLICT (project, task_id, label) DO UPDATE SET requests = requests + 1",
                    (project_key(project), int(task_id), label),
                )
        except sqlite3.Error as error:
            log.warning("%s: cannot count the interactive request of task %s: %s", self.path, task_id, error)

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
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
