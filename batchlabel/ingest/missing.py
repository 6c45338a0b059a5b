"""Files gone from the document root whose Label Studio task remains: moved, or deleted.

- **Moved** (renamed, or moved to another folder under the root): the same sha256 shows up at a new path. The task
  follows its content: its image URL is updated in place (PATCH of the task's data), the journal row moves with it
  (task, prediction, stage), no second task, one log line. The intake does this when it meets the new path
  (:func:`relocate_task`); a move done as copy-then-delete (the copy journaled as a duplicate first) is resolved by
  :func:`reconcile_missing` after ``run``'s pass.
- **Deleted**: the task is kept (its annotations are work), logged by ``run`` and counted by ``batchlabel status``
  (:func:`missing_records`). ``run --prune-missing`` deletes the tasks of deleted files that have no annotation,
  draft or skip; annotated ones are kept and listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchlabel.sync import client as ls_client

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.ingest.journal import FileRecord, Journal
    from batchlabel.ingest.sink import LabelStudioSink

log = logging.getLogger(__name__)

LISTED_IN_LOG = 10  # names in the one log line about deleted files


def missing_records(config: Config, journal: Journal) -> list[FileRecord]:
    """Journaled files with a Label Studio task whose file is gone from ``storage.root`` (stat per file)."""
    root = config.storage.root
    return [record for record in journal.records(("pushed",))
            if record.task_id is not None and not (root / record.rel_path).exists()]


def annotation_count(task: dict) -> int:
    """How much human work a task holds: its annotations (skipped ones included) and drafts."""
    count = 0
    for key in ("annotations", "drafts"):
        value = task.get(key)
        count += len(value) if isinstance(value, list) else 0
    if count == 0:
        for key in ("total_annotations", "cancelled_annotations"):
            value = task.get(key)
            count += value if isinstance(value, int) else 0
    return count


def relocate_task(journal: Journal, sink: LabelStudioSink, old_rel: str, new_rel: str, task_id: int) -> bool:
    """Point task ``task_id`` (showing ``old_rel``, now gone) at ``new_rel`` (same content) and move the journal row.

    Only the task's data values naming ``old_rel`` are changed (``image`` when none does). Returns False when the
    task no longer exists in Label Studio (the caller then treats ``new_rel`` as a new file). Raises
    ``LabelStudioUnavailableError`` / ``LabelStudioError`` (other than 404) as the client does.
    """
    try:
        task = sink.task(task_id)
    except ls_client.LabelStudioError as error:
        if error.status != 404:
            raise
        log.info("%s: task %s of its old path %s no longer exists in Label Studio", new_rel, task_id, old_rel)
        journal.remove(old_rel)
        return False
    data = dict(task.get("data") or {})
    url = ls_client.image_url(new_rel)
    keys = [key for key, value in data.items()
            if isinstance(value, str) and ls_client.rel_path_from_url(value) == old_rel] or ["image"]
    data.update(dict.fromkeys(keys, url))
    sink.ensure_served([new_rel])
    ls_client.update_task(sink.ls, task_id, data=data)
    journal.move(old_rel, new_rel)
    if sink.index is not None:
        entry = sink.index.by_path.pop(old_rel, None)
        if entry is not None:
            entry["_rel_path"] = new_rel
            entry["data"] = data
            sink.index.by_path[new_rel] = entry
    log.info("%s: moved from %s (same sha256); task %s now shows it, no second task", new_rel, old_rel, task_id)
    return True


@dataclass
class MissingFiles:
    """What :func:`reconcile_missing` found: ``kept`` (rel_path, task_id) of deleted files whose task stays,
    ``pruned`` (rel_path, task_id) deleted with ``--prune-missing``, ``relocated`` (old, new) rel paths."""

    kept: list[tuple[str, int]] = field(default_factory=list)
    pruned: list[tuple[str, int]] = field(default_factory=list)
    relocated: list[tuple[str, str]] = field(default_factory=list)


def reconcile_missing(config: Config, journal: Journal, sink: LabelStudioSink, *, prune: bool,
                      log_kept: bool = True) -> MissingFiles:
    """After a pass: each task whose file is gone follows a journaled duplicate with the same bytes still on disk
    (copy-then-delete), else it is kept (logged in one line unless ``log_kept`` is False), or with ``prune`` deleted
    when it holds no annotation. Duplicate rows of gone files are dropped (they have no task). Raises
    ``LabelStudioUnavailableError`` / ``LabelStudioError`` as the client does (what was done so far stays done)."""
    root = config.storage.root
    found = MissingFiles()
    for record in journal.records(("duplicate",)):
        if not (root / record.rel_path).exists():
            journal.remove(record.rel_path)
    missing = list(missing_records(config, journal))
    if prune and missing and len(missing) >= journal.counts().get("pushed", 0):
        log.warning("every journaled file is missing from %s (an unmounted share?): nothing pruned; prune again once "
                    "the files are back or really gone", root)
        prune = False
    for record in missing:
        assert record.task_id is not None
        twin = next((other for other in journal.by_sha256(record.sha256 or "")
                     if other.stage == "duplicate" and (root / other.rel_path).is_file()), None)
        if twin is not None and relocate_task(journal, sink, record.rel_path, twin.rel_path, record.task_id):
            found.relocated.append((record.rel_path, twin.rel_path))
            continue
        if prune and _prune(journal, sink, record.rel_path, record.task_id):
            found.pruned.append((record.rel_path, record.task_id))
            continue
        found.kept.append((record.rel_path, record.task_id))
    if found.kept and log_kept:
        names = ", ".join(f"{rel} (task {task_id})" for rel, task_id in found.kept[:LISTED_IN_LOG])
        more = f" and {len(found.kept) - LISTED_IN_LOG} more" if len(found.kept) > LISTED_IN_LOG else ""
        advice = "annotated, kept" if prune else ("kept: annotations are work; `batchlabel run --prune-missing` "
                                                 "deletes the tasks without annotations")
        log.warning("%d file(s) deleted from %s still have tasks (%s): %s%s", len(found.kept), root, advice, names,
                    more)
    return found


def _prune(journal: Journal, sink: LabelStudioSink, rel: str, task_id: int) -> bool:
    """Delete the task of the deleted file ``rel`` unless it holds human work; True when it is gone."""
    try:
        task = sink.task(task_id)
    except ls_client.LabelStudioError as error:
        if error.status != 404:
            raise
        journal.remove(rel)
        return True
    work = annotation_count(task)
    if work:
        log.info("%s: deleted, but task %s holds %d annotation(s)/draft(s): kept", rel, task_id, work)
        return False
    ls_client.delete_task(sink.ls, task_id)
    journal.remove(rel)
    log.info("%s: deleted; its task %s had no annotation and was pruned (--prune-missing)", rel, task_id)
    return True
