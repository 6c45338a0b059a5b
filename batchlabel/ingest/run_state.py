"""What one ingestion run has in flight and what it did, shared by the pipeline's stages (each on its own thread)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchlabel.ingest.journal import Journal

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """What a run did; ``failed`` holds (rel_path, stage, reason)."""

    discovered: int = 0
    unchanged: int = 0
    duplicates: int = 0
    encoded: int = 0
    cached: int = 0
    predicted: int = 0
    predicted_on_cluster: int = 0
    pushed: int = 0
    already_in_label_studio: int = 0
    moved: int = 0
    overwritten_annotated: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "discovered": self.discovered, "unchanged": self.unchanged, "duplicates": self.duplicates,
            "encoded": self.encoded, "cached": self.cached, "predicted": self.predicted,
            "predicted_on_cluster": self.predicted_on_cluster, "pushed": self.pushed,
            "already_in_label_studio": self.already_in_label_studio, "push_batches": self.batches,
            "moved": self.moved, "overwritten_annotated": self.overwritten_annotated,
            "failed": [{"path": p, "stage": s, "reason": r} for p, s, r in self.failed],
        }


class RunState:
    """The files in flight (document-root POSIX paths), the :class:`Counters`, the files left unpushed, and the journal
    updates that end a file's trip (failed, deleted meanwhile), each followed by the progress callback. Thread-safe.

    Args:
        journal: the ingestion journal.
        on_progress: called with each finished file's rel_path (progress bars), from the stages' threads.
    """

    def __init__(self, journal: Journal, on_progress: Callable[[str], None] | None = None) -> None:
        self.journal = journal
        self.counters = Counters()
        self.not_pushed: list[str] = []
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()

    def in_flight(self, rel: str) -> bool:
        with self._lock:
            return rel in self._in_flight

    def admit(self, rel: str) -> None:
        """``rel`` enters the encode queue."""
        with self._lock:
            self._in_flight.add(rel)

    def count(self, **increments: int) -> None:
        """Add to named counters, e.g. ``count(encoded=1, cached=0)``."""
        with self._lock:
            self._add(increments)

    def progress(self, rel: str) -> None:
        if self._on_progress is not None:
            self._on_progress(rel)

    def finished(self, rel: str, **increments: int) -> None:
        """``rel`` is done (its journal stage already written): counted, out of flight, progress reported."""
        with self._lock:
            self._add(increments)
            self._in_flight.discard(rel)
        self.progress(rel)

    def release(self, rels: Iterable[str], *, not_pushed: bool = False) -> None:
        """Out of flight without finishing (stopped, or left for the next run: ``not_pushed``)."""
        rels = list(rels)
        with self._lock:
            self._in_flight.difference_update(rels)
            if not_pushed:
                self.not_pushed.extend(rels)

    def fail(self, rel: str, stage: str, reason: str, sha: str | None) -> None:
        """Journal ``rel`` as failed at ``stage`` (a warning naming the file and the reason)."""
        self.journal.mark_failed(rel, stage, reason, sha)
        with self._lock:
            self.counters.failed.append((rel, stage, reason))
            self._in_flight.discard(rel)
        log.warning("%s: %s failed: %s", rel, stage, reason)
        self.progress(rel)

    def vanished(self, rel: str) -> None:
        """``rel`` was deleted while in the pipeline: dropped from the journal with a log line, never a task."""
        self.journal.forget(rel)
        with self._lock:
            self._in_flight.discard(rel)
        log.info("%s: deleted before its task was pushed; dropped from the journal", rel)
        self.progress(rel)

    def _add(self, increments: dict[str, int]) -> None:  # the caller holds the lock
        for name, amount in increments.items():
            setattr(self.counters, name, getattr(self.counters, name) + amount)
