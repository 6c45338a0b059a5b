"""The ingestion journal: one SQLite database (WAL) recording where every discovered image stands.

One row per file (``rel_path``: relative to ``storage.root``, POSIX separators) with its content hash and
stage: ``discovered`` -> ``encoded`` -> ``predicted`` -> ``pushed``; or ``failed`` (with the stage that
failed and the reason) or ``duplicate`` (same bytes as another file, whose Label Studio task stands for
both).

Every transition is a committed transaction, and callers commit a transition *before* the next side effect,
so a ``kill -9`` at any moment leaves a journal from which the next run resumes: at worst a stage is redone
(encoding is idempotent through the embedding store; a push that may have reached Label Studio is marked
``push_started`` and is reconciled against Label Studio, by the image hash in the task's ``meta``, before it
is retried).

The journal is an optimisation and a record, never the only truth: when it is lost, a run reconciles with
Label Studio instead of duplicating tasks.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STAGES = ("discovered", "encoded", "predicted", "pushed", "failed", "duplicate")
#: Stages after which a pass leaves a file alone until its content changes (a failure also when its retry is due).
FINISHED_STAGES = ("pushed", "duplicate", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    rel_path      TEXT PRIMARY KEY,
    sha256        TEXT,
    size          INTEGER,
    mtime_ns      INTEGER,
    stage         TEXT NOT NULL,
    failed_stage  TEXT,
    last_error    TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    model_id      TEXT,
    model_version TEXT,
    task_id       INTEGER,
    prediction_id INTEGER,
    push_started  INTEGER NOT NULL DEFAULT 0,
    updated_at    REAL NOT NULL,
    transient     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_stage ON files (stage);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class JournalCorruptError(Exception):
    """The journal file exists but is not a readable SQLite database. ``str()`` names it and says what to do."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: the ingestion journal is corrupt ({reason}). Move it aside (mv '{path}' '{path}.corrupt') and "
            "run again: batchlabel rebuilds it, matching files to their Label Studio tasks by image hash, so "
            "nothing is duplicated"
        )


@dataclass(frozen=True)
class FileRecord:
    """One journal row. ``rel_path`` is POSIX, relative to ``storage.root``."""

    rel_path: str
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    stage: str
    failed_stage: str | None
    last_error: str | None
    attempts: int
    model_id: str | None
    model_version: str | None
    task_id: int | None
    prediction_id: int | None
    push_started: bool
    updated_at: float
    transient: bool = False  # a failure that can pass (see batchlabel.ingest.retry)


_COLUMNS = (
    "rel_path, sha256, size, mtime_ns, stage, failed_stage, last_error, attempts, model_id, model_version, "
    "task_id, prediction_id, push_started, updated_at, transient"
)


def _record(row: tuple) -> FileRecord:
    values = list(row)
    values[12] = bool(values[12])
    values[14] = bool(values[14])
    return FileRecord(*values)


class Journal:
    """Thread-safe access to the journal database at ``path`` (created with its folder when missing).

    Args:
        path: the SQLite file, normally ``config.journal_path``.
        clock: returns unix seconds; injectable for tests.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            if "transient" not in columns:  # a journal written before failures were classified: classify them now
                from batchlabel.ingest.retry import is_transient

                self._db.execute("ALTER TABLE files ADD COLUMN transient INTEGER NOT NULL DEFAULT 0")
                failed = self._db.execute("SELECT rel_path, last_error FROM files WHERE stage = 'failed'").fetchall()
                self._db.executemany("UPDATE files SET transient = 1 WHERE rel_path = ?",
                                     [(rel,) for rel, reason in failed if is_transient(reason)])
            self._db.execute("SELECT count(*) FROM files").fetchone()
        except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
            self._db.close()
            raise JournalCorruptError(self.path, str(error)) from None

    # -- plumbing --------------------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------------------
    def get(self, rel_path: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM files WHERE rel_path = ?", (rel_path,)).fetchone()
        return _record(row) if row else None

    def by_sha256(self, sha256: str) -> list[FileRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE sha256 = ? ORDER BY rel_path", (sha256,)
            ).fetchall()
        return [_record(row) for row in rows]

    def owner_of(self, sha256: str, *, exclude: str | None = None) -> FileRecord | None:
        """The file (other than ``exclude``) whose task carries images with this hash, if any."""
        for record in self.by_sha256(sha256):
            if record.rel_path != exclude and record.stage not in ("duplicate", "failed"):
                return record
        return None

    def records(self, stages: Iterable[str] | None = None) -> list[FileRecord]:
        with self._lock:
            if stages is None:
                rows = self._db.execute(f"SELECT {_COLUMNS} FROM files ORDER BY rel_path").fetchall()
            else:
                wanted = tuple(stages)
                marks = ",".join("?" * len(wanted))
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM files WHERE stage IN ({marks}) ORDER BY rel_path", wanted
                ).fetchall()
        return [_record(row) for row in rows]

    def pending(self) -> list[FileRecord]:
        """Files with work left: every stage except pushed, duplicate and failed."""
        return self.records(("discovered", "encoded", "predicted"))

    def counts(self) -> dict[str, int]:
        """Number of files per stage (every stage present, zero when none)."""
        counts = dict.fromkeys(STAGES, 0)
        with self._lock:
            for stage, count in self._db.execute("SELECT stage, COUNT(*) FROM files GROUP BY stage"):
                counts[stage] = count
        return counts

    def failures(self) -> list[FileRecord]:
        return self.records(("failed",))

    def is_empty(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None

    # -- transitions -----------------------------------------------------------------------------------------
    def mark_discovered(
        self, rel_path: str, sha256: str, *, size: int | None = None, mtime_ns: int | None = None
    ) -> bool:
        """Record a stable file.

        Returns True when this is new work (a new file or new content), False when the journal already has
        this exact content for this path (nothing to do).
        """
        now = self._clock()
        with self._transaction() as db:
            row = db.execute("SELECT sha256, stage FROM files WHERE rel_path = ?", (rel_path,)).fetchone()
            if row is not None and row[0] == sha256:
                db.execute(
                    "UPDATE files SET size = ?, mtime_ns = ? WHERE rel_path = ?", (size, mtime_ns, rel_path)
                )
                return False
            if row is None:
                db.execute(
                    "INSERT INTO files (rel_path, sha256, size, mtime_ns, stage, updated_at) "
                    "VALUES (?, ?, ?, ?, 'discovered', ?)",
                    (rel_path, sha256, size, mtime_ns, now),
                )
            else:
                # New content at a known path: a new version. The task (if any) is kept and updated on push.
                db.execute(
                    "UPDATE files SET sha256 = ?, size = ?, mtime_ns = ?, stage = 'discovered', "
                    "failed_stage = NULL, "
                    "last_error = NULL, attempts = 0, model_id = NULL, model_version = NULL, prediction_id "
                    "= NULL, "
                    "push_started = 0, updated_at = ? WHERE rel_path = ?",
                    (sha256, size, mtime_ns, now, rel_path),
                )
            return True

    def mark_encoded(self, rel_path: str, sha256: str, model_id: str) -> None:
        """The embedding of ``sha256`` by ``model_id`` is in the store."""
        now = self._clock()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE files SET sha256 = ?, model_id = ?, updated_at = ?, failed_stage = NULL, last_error "
                "= NULL, "
                "stage = CASE WHEN stage IN ('discovered', 'failed') THEN 'encoded' ELSE stage END "
                "WHERE rel_path = ?",
                (sha256, model_id, now, rel_path),
            )
            if cursor.rowcount == 0:
                db.execute(
                    "INSERT INTO files (rel_path, sha256, stage, model_id, updated_at) VALUES (?, ?, "
                    "'encoded', ?, ?)",
                    (rel_path, sha256, model_id, now),
                )

    def mark_predicted(self, rel_path: str, model_version: str) -> None:
        """A prediction with ``model_version`` was computed (in memory; recomputed after a crash)."""
        self._set(rel_path, stage="predicted", model_version=model_version)

    def mark_push_started(self, rel_paths: Iterable[str]) -> None:
        """About to send these files' tasks/predictions: after a crash, reconcile them before a retry."""
        now = self._clock()
        with self._transaction() as db:
            db.executemany(
                "UPDATE files SET push_started = 1, attempts = attempts + 1, updated_at = ? "
                "WHERE rel_path = ?",
                [(now, path) for path in rel_paths],
            )

    def mark_pushed(
        self, rel_path: str, task_id: int, prediction_id: int | None = None, model_version: str | None = None
    ) -> None:
        """The task exists in Label Studio with its current prediction (none in mode ``none``)."""
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET stage = 'pushed', task_id = ?, prediction_id = ?, "
                "model_version = COALESCE(?, model_version), push_started = 0, failed_stage = NULL, "
                "last_error = NULL, updated_at = ? WHERE rel_path = ?",
                (task_id, prediction_id, model_version, now, rel_path),
            )

    def mark_duplicate(self, rel_path: str, sha256: str, owner: str, task_id: int | None = None) -> None:
        """``rel_path`` has the same bytes as ``owner``, whose task stands for both."""
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (rel_path, sha256, stage, task_id, last_error, updated_at) "
                "VALUES (?, ?, 'duplicate', ?, ?, ?) ON CONFLICT(rel_path) DO UPDATE SET sha256 = "
                "excluded.sha256, "
                "stage = 'duplicate', task_id = excluded.task_id, last_error = excluded.last_error, "
                "failed_stage = NULL, push_started = 0, updated_at = excluded.updated_at",
                (rel_path, sha256, task_id, f"same content as {owner}", now),
            )

    def mark_failed(
        self, rel_path: str, stage: str, reason: str, sha256: str | None = None, *, transient: bool | None = None
    ) -> None:
        """``stage`` failed for ``rel_path`` with a one-line ``reason``.

        ``transient`` (default: decided from ``reason`` by :func:`batchlabel.ingest.retry.is_transient`): a failure
        that can pass is retried by a later pass with back-off (:meth:`due_retries`); any other is retried when the
        file's content changes, or after :meth:`retry_failed`.
        """
        from batchlabel.ingest.retry import is_transient

        flag = int(is_transient(reason) if transient is None else transient)
        now = self._clock()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE files SET stage = 'failed', failed_stage = ?, last_error = ?, attempts = attempts + "
                "1, "
                "sha256 = COALESCE(?, sha256), push_started = 0, transient = ?, updated_at = ? WHERE rel_path = ?",
                (stage, reason, sha256, flag, now, rel_path),
            )
            if cursor.rowcount == 0:
                db.execute(
                    "INSERT INTO files (rel_path, sha256, stage, failed_stage, last_error, attempts, "
                    "transient, updated_at) "
                    "VALUES (?, ?, 'failed', ?, ?, 1, ?, ?)",
                    (rel_path, sha256, stage, reason, flag, now),
                )

    def record_encode(self, rel_path: str, *, sha256: str | None, model_id: str, error: str | None) -> None:
        """``batchlabel encode``'s outcome for one file: failed at stage ``encode`` with ``error``, else encoded
        (nothing when the file could not even be read for its hash)."""
        if error is not None:
            self.mark_failed(rel_path, "encode", error, sha256)
        elif sha256 is not None:
            self.mark_encoded(rel_path, sha256, model_id)

    def retry_due(self, record: FileRecord) -> bool:
        """True when ``record`` is a transient failure whose back-off has passed."""
        from batchlabel.ingest.retry import retry_due

        return record.stage == "failed" and retry_due(
            transient=record.transient, attempts=record.attempts, failed_at=record.updated_at, now=self._clock()
        )

    def due_retries(self) -> list[FileRecord]:
        """Transient failures whose back-off has passed (``watch`` feeds them back periodically)."""
        return [record for record in self.failures() if self.retry_due(record)]

    def mark_attempt_error(self, rel_path: str, reason: str) -> None:
        """A transient error (e.g. Label Studio unreachable): the stage is kept and retried later."""
        now = self._clock()
        with self._transaction() as db:
            db.execute(
                "UPDATE files SET last_error = ?, updated_at = ? WHERE rel_path = ?", (reason, now, rel_path)
            )

    def retry_failed(self) -> int:
        """Put every failed file back to ``discovered`` so the next pass tries it again. Returns how many."""
        now = self._clock()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE files SET stage = 'discovered', push_started = 0, updated_at = ? "
                "WHERE stage = 'failed'",
                (now,),
            )
            return cursor.rowcount

    def requeue_for_version(self, rel_paths: Iterable[str], model_version: str) -> list[str]:
        """Put pushed files whose prediction is not of ``model_version`` back to ``discovered``, so the next pass
        predicts them again (``train``'s re-predict: once per model version). Returns the files requeued."""
        now = self._clock()
        requeued = []
        with self._transaction() as db:
            for rel_path in rel_paths:
                cursor = db.execute(
                    "UPDATE files SET stage = 'discovered', push_started = 0, updated_at = ? WHERE rel_path = ? "
                    "AND stage = 'pushed' AND (model_version IS NULL OR model_version != ?)",
                    (now, rel_path, model_version),
                )
                if cursor.rowcount:
                    requeued.append(rel_path)
        return requeued

    def forget(self, rel_path: str) -> None:
        """Drop a file that disappeared before it was pushed."""
        with self._transaction() as db:
            db.execute("DELETE FROM files WHERE rel_path = ? AND stage != 'pushed'", (rel_path,))

    def _set(self, rel_path: str, **values: object) -> None:
        now = self._clock()
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self._transaction() as db:
            db.execute(
                f"UPDATE files SET {assignments}, updated_at = ? WHERE rel_path = ?",
                (*values.values(), now, rel_path),
            )
