"""The Label Studio side of ingestion: the project, its storages and model version, what already exists there, and
pushing tasks with predictions in bulk.

Idempotence: every task batchlabel creates carries ``meta.sha256``. :class:`TaskIndex` maps image hashes and
document-root paths to existing tasks, so a lost journal or a push whose answer was lost (``kill -9``, an outage)
is reconciled instead of duplicated: a file whose task exists only gets the prediction it lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchlabel.annotate.preannotate import MODEL_VERSION_PREFIX
from batchlabel.sync import client as ls_client

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

    from batchlabel.config import Config

log = logging.getLogger(__name__)


@dataclass
class PushItem:
    """One file ready to push: its task (existing ``task_id`` or None) and prediction (None: no prediction)."""

    rel_path: str
    sha256: str
    prediction: dict | None
    task_id: int | None = None
    replace_prediction_ids: list[int] = field(default_factory=list)
    new_version: bool = False


@dataclass
class TaskIndex:
    """Existing tasks of the project, by image hash (``meta.sha256``) and by document-root path (``data.image``).

    ``full`` keeps whole task dicts (annotations and predictions with results) for the ``boxes``/``points`` modes;
    otherwise only ids, hashes and prediction (id, model_version) pairs are kept.
    """

    by_sha: dict[str, dict] = field(default_factory=dict)
    by_path: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, ls: LabelStudio, project_id: int, *, full: bool) -> TaskIndex:
        index = cls()
        count = 0
        for task in ls_client.iter_tasks(ls, project_id):
            count += 1
            rel = ls_client.rel_path_from_url(str((task.get("data") or {}).get("image") or ""))
            sha = (task.get("meta") or {}).get("sha256")
            entry = task if full else {
                "id": task["id"], "data": task.get("data"), "meta": task.get("meta"),
                "predictions": [
                    {"id": p.get("id"), "model_version": p.get("model_version")}
                    for p in task.get("predictions") or () if isinstance(p, dict)
                ],
            }
            entry["_rel_path"] = rel
            if sha and sha not in index.by_sha:
                index.by_sha[sha] = entry
            if rel and rel not in index.by_path:
                index.by_path[rel] = entry
        log.info("Label Studio project %s has %d tasks (%d with a batchlabel hash)", project_id, count,
                 len(index.by_sha))
        return index


def predictions_of(task: dict, model_version: str) -> list[int]:
    """Ids of the task's predictions with exactly ``model_version``."""
    return [p["id"] for p in task.get("predictions") or () if isinstance(p, dict)
            and p.get("model_version") == model_version and p.get("id") is not None]


def stale_predictions_of(task: dict, model_version: str) -> list[int]:
    """Ids of batchlabel's predictions on the task with another ``model_version`` (replaced by a new one)."""
    return [p["id"] for p in task.get("predictions") or () if isinstance(p, dict)
            and str(p.get("model_version") or "").startswith(MODEL_VERSION_PREFIX)
            and p.get("model_version") != model_version and p.get("id") is not None]


class LabelStudioSink:
    """Pushes ingestion results to one Label Studio project.

    Args:
        ls: a connected SDK client (:func:`batchlabel.sync.client.connect`).
        config: the validated config.
        model_version: the version of this run's predictions (the project is set to show it).
        chunk_size: tasks or predictions per request.
    """

    def __init__(self, ls: LabelStudio, config: Config, model_version: str, *,
                 chunk_size: int = ls_client.DEFAULT_CHUNK_SIZE) -> None:
        self.ls = ls
        self.config = config
        self.model_version = model_version
        self.chunk_size = chunk_size
        self.project: Any = None
        self.index: TaskIndex | None = None
        self._coverage: ls_client.StorageCoverage | None = None
        self._version_shown = False

    @property
    def project_id(self) -> int:
        return int(self.project.id)

    def open(self) -> None:
        """Find or create the project and its storage; make it show this run's model version."""
        self.project = ls_client.ensure_project(self.ls, self.config)
        self._coverage = ls_client.ensure_local_storage(self.ls, self.project_id, self.config.storage.root)
        self._version_shown = self.config.preannotate.mode == "none"
        self._show_model_version()

    def _show_model_version(self) -> None:
        """Make the project show this run's predictions. Label Studio refuses a version no prediction has yet
        (HTTP 400), so until the first push this is retried after each push that carried predictions."""
        if self._version_shown:
            return
        try:
            ls_client.ensure_model_version(self.ls, self.project, self.model_version)
        except ls_client.LabelStudioError as error:
            if error.status != 400:
                raise
            log.debug("model version %r not settable yet: %s", self.model_version, error.message)
            return
        self._version_shown = True

    def load_index(self) -> TaskIndex:
        full = self.config.preannotate.mode in ("boxes", "points")
        self.index = TaskIndex.load(self.ls, self.project_id, full=full)
        return self.index

    def task(self, task_id: int) -> dict:
        return ls_client.get_task(self.ls, task_id)

    def ensure_served(self, rel_paths: Iterable[str]) -> None:
        if self._coverage is not None:
            self._coverage.ensure(rel_paths)

    def push(self, items: Sequence[PushItem]) -> dict[str, int]:
        """Create the new tasks (with inline predictions) and add predictions to existing tasks, in bulk.

        Returns ``{rel_path: task_id}`` for every item. Raises ``LabelStudioUnavailableError`` (nothing known about
        what reached the server: reconcile before retrying) or ``LabelStudioError`` (4xx, Label Studio's message).
        """
        self.ensure_served(item.rel_path for item in items)
        done: dict[str, int] = {}
        new = [item for item in items if item.task_id is None]
        existing = [item for item in items if item.task_id is not None]
        if new:
            tasks = [ls_client.make_task(item.rel_path, item.sha256, item.prediction) for item in new]
            ids = ls_client.import_tasks(self.ls, self.project_id, tasks, chunk_size=self.chunk_size)
            for item, task_id in zip(new, ids, strict=True):
                done[item.rel_path] = task_id
        updates = [item for item in existing if item.new_version]
        for item in updates:
            assert item.task_id is not None
            ls_client.update_task(self.ls, item.task_id, data={"image": ls_client.image_url(item.rel_path)},
                                  meta={"sha256": item.sha256, "batchlabel": ls_client.__version__})
        stale = [pid for item in existing for pid in item.replace_prediction_ids]
        for prediction_id in stale:
            ls_client.delete_prediction(self.ls, prediction_id)
        predictions = [{"task": item.task_id, **item.prediction} for item in existing if item.prediction is not None]
        if predictions:
            ls_client.push_predictions(self.ls, self.project_id, predictions, chunk_size=self.chunk_size)
        for item in existing:
            assert item.task_id is not None
            done[item.rel_path] = item.task_id
        if any(item.prediction is not None for item in items):
            self._show_model_version()
        return done

    def reconcile(self, items: Sequence[PushItem]) -> tuple[dict[str, int], list[PushItem]]:
        """After a push whose outcome is unknown: which items are already complete in Label Studio (returned as
        ``{rel_path: task_id}``), and the rest rewritten to push only what is missing."""
        index = self.load_index()
        complete: dict[str, int] = {}
        remaining: list[PushItem] = []
        for item in items:
            task = index.by_sha.get(item.sha256) or index.by_path.get(item.rel_path)
            if task is None:
                remaining.append(item)
                continue
            have = predictions_of(task, self.model_version)
            if item.prediction is None or have:
                for extra in have[1:]:  # a retried upload may have doubled it: keep one current prediction
                    ls_client.delete_prediction(self.ls, extra)
                complete[item.rel_path] = int(task["id"])
                continue
            item.task_id = int(task["id"])
            item.new_version = (task.get("meta") or {}).get("sha256") != item.sha256
            remaining.append(item)
        return complete, remaining

    def complete_task(self, rel_path: str, sha256: str) -> dict | None:
        """From the index: the existing task for this file when it needs nothing more (current prediction, or
        mode none); None otherwise."""
        if self.index is None:
            return None
        task = self.index.by_path.get(rel_path)
        if task is None or (task.get("meta") or {}).get("sha256") != sha256:
            return None
        if self.config.preannotate.mode == "none" or predictions_of(task, self.model_version):
            return task
        return None
