"""Stage 1 of the pipeline (the caller's thread): a stable file -> read and hashed once -> journaled -> deduplicated.

Reading and hashing happen once: the bytes travel with the file (:class:`WorkItem` ``source``) to the encoder, which
decodes exactly them, so the embedding belongs to the sha256 journaled. A file already pushed, a duplicate or a
permanent failure is counted as unchanged; a failure whose cause can pass is tried again when it is due
(:mod:`batchlabel.ingest.retry`). Same content under a second name gets no second task (journaled as a duplicate of
the first); when the first name is gone, the file was moved and its task follows it (:mod:`batchlabel.ingest.missing`).
New content at a path whose task holds annotations is warned about, naming the task, and journaled for ``status``.
A file whose task already carries this run's prediction is only encoded (for the store).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchlabel.infer.confine import PathConfinementError, confine_path
from batchlabel.infer.images import ReadImage, read_image_file
from batchlabel.ingest.journal import FINISHED_STAGES
from batchlabel.ingest.missing import annotation_count, relocate_task
from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.ingest.discovery import StableFile
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.run_state import RunState
    from batchlabel.ingest.sink import LabelStudioSink

log = logging.getLogger(__name__)


@dataclass
class WorkItem:
    """One file moving through the pipeline (``path`` absolute, ``rel_path`` POSIX under the root); ``source``: its
    bytes as read and hashed by the intake (``sha256`` is theirs), what the encoder decodes."""

    rel_path: str
    path: Path
    source: ReadImage
    task: dict | None = None  # the existing Label Studio task (full dict in boxes/points modes)
    complete: bool = False  # the task already has the current prediction: encode only (for the store)

    @property
    def sha256(self) -> str:
        return self.source.sha256


class Intake:
    """Turns stable files into :class:`WorkItem` s for the encoder (or nothing, when there is nothing to do).

    Args:
        config: the validated config (document root, pre-annotation mode).
        journal: the ingestion journal.
        sink: the Label Studio side (its task index, task reads, the complete-task check).
        state: the run's shared state (in flight, counters, failures).
    """

    def __init__(self, config: Config, journal: Journal, sink: LabelStudioSink, state: RunState) -> None:
        self.config = config
        self.journal = journal
        self.sink = sink
        self.state = state

    def admit(self, stable: StableFile) -> WorkItem | None:
        """The work ``stable`` needs, journaled as discovered; ``None`` when it needs none (in flight already,
        unchanged, a duplicate, outside the root, unreadable: each journaled and counted as such)."""
        rel = stable.rel_path
        if self.state.in_flight(rel):
            return None  # already moving; a newer version is picked up by its next event
        try:
            confine_path(stable.path, self.config.storage.root)
        except PathConfinementError as error:
            if error.missing:
                self.journal.forget(rel)
            else:
                self.state.fail(rel, "discover", error.reason, None)
            return None
        try:
            source = read_image_file(stable.path)
        except FileNotFoundError:
            self.journal.forget(rel)
            return None
        except OSError as error:
            self.state.fail(rel, "hash", f"cannot read file: {error.strerror or error}", None)
            return None
        sha = source.sha256
        previous = self.journal.get(rel)
        new = self.journal.mark_discovered(rel, sha, size=stable.size, mtime_ns=stable.mtime_ns)
        record = self.journal.get(rel)
        if not new and record is not None and record.stage in FINISHED_STAGES:
            if not self.journal.retry_due(record):
                self.state.count(unchanged=1)
                return None
            log.info("%s: retrying after a failure that can pass (attempt %d): %s", rel, record.attempts + 1,
                     record.last_error)
        self.state.count(discovered=1)
        root = self.config.storage.root
        owner = self.journal.owner_of(sha, exclude=rel)
        if owner is not None and owner.stage != "failed" and (root / owner.rel_path).exists():
            self.journal.mark_duplicate(rel, sha, owner.rel_path, owner.task_id)
            log.info("%s: same content as %s, no second task", rel, owner.rel_path)
            self.state.finished(rel, duplicates=1)
            return None
        if (owner is not None and owner.stage == "pushed" and owner.task_id is not None
                and (previous is None or previous.task_id is None)):
            moved = self._relocate(owner.rel_path, rel, owner.task_id, sha)
            if moved:
                self.state.finished(rel, moved=1)  # renamed or moved: the task follows its content
                return None
            if moved is None:
                return None  # Label Studio unavailable: failed transiently, retried by the next pass
        task = self._existing_task(rel, sha, record.task_id if record is not None else None, refresh=new)
        if task is not None and task.get("_rel_path") not in (None, rel):
            old_rel = str(task["_rel_path"])
            if (root / old_rel).exists():
                self.journal.mark_duplicate(rel, sha, old_rel, int(task["id"]))
                log.info("%s: same content as %s (task %s), no second task", rel, old_rel, task["id"])
                self.state.finished(rel, duplicates=1)
                return None
            moved = self._relocate(old_rel, rel, int(task["id"]), sha)  # moved while the journal did not know it
            if moved is None:
                return None
            if moved:
                task["_rel_path"] = rel
                self.state.count(moved=1)
            else:
                task = None  # the task was deleted meanwhile: a new one
        if new and task is not None and previous is not None and previous.sha256 not in (None, sha):
            self._warn_if_annotated(rel, task)
        item = WorkItem(rel, stable.path, source, task)
        item.complete = task is not None and self.sink.complete_task(rel, sha) is not None
        self.state.admit(rel)
        return item

    def _relocate(self, old_rel: str, rel: str, task_id: int, sha: str) -> bool | None:
        """:func:`relocate_task`: True moved, False the task is gone; None when Label Studio could not be asked
        (``rel`` failed transiently, retried by a later pass)."""
        try:
            return relocate_task(self.journal, self.sink, old_rel, rel, task_id)
        except (LabelStudioError, LabelStudioUnavailableError) as error:
            self.state.fail(rel, "move", f"Label Studio unavailable: cannot point task {task_id} at it ({error})",
                            sha)
            return None

    def _warn_if_annotated(self, rel: str, task: dict) -> None:
        """``rel`` got new content: when its task holds annotations (of the old content, kept as they are; the
        prediction is replaced), warn naming the task and journal it for ``status``."""
        task_id = int(task["id"])
        if "annotations" not in task:  # an index entry without results: read the task
            try:
                task = self.sink.task(task_id)
            except (LabelStudioError, LabelStudioUnavailableError) as error:
                log.warning("%s: overwritten with new content; cannot read task %s to check its annotations (%s)",
                            rel, task_id, error)
                return
        count = annotation_count(task)
        if count:
            log.warning("%s: overwritten with new content, but task %s holds %d annotation(s)/draft(s) of the old "
                        "content: they are kept as they are while its prediction is replaced by one of the new "
                        "content; review task %s", rel, task_id, count, task_id)
            self.journal.note_overwritten_annotated(rel, task_id, count)
            self.state.count(overwritten_annotated=1)

    def _existing_task(self, rel: str, sha: str, task_id: int | None, *, refresh: bool) -> dict | None:
        """The Label Studio task standing for this file, if one exists (the index, then the journal's task id;
        ``refresh``: read the task itself, e.g. for a new version whose old predictions are replaced)."""
        index = self.sink.index
        if index is not None:
            task = index.by_sha.get(sha)
            if task is None:
                task = index.by_path.get(rel)
            if task is not None:
                return task
        if task_id is not None:
            if refresh or self.config.preannotate.mode in ("boxes", "points"):
                try:
                    task = self.sink.task(task_id)
                except (LabelStudioError, LabelStudioUnavailableError) as error:
                    log.warning("%s: cannot read task %s (%s); predicting without its prompts", rel, task_id, error)
                    task = {"id": task_id}
            else:
                task = {"id": task_id}
            task["_rel_path"] = rel
            return task
        return None
