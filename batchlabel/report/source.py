"""The tasks a report reads: a live project exported **with its predictions in full**, or a user's JSON export.

Label Studio's plain JSON export (the UI's Export button, ``/api/projects/{id}/export``) lists a task's
``predictions`` as ids only; an annotation started from a prediction carries that prediction in full under
``annotation.prediction``. A live project is therefore exported as an export snapshot with
``serialization_options.predictions.only_id = false`` (every prediction in full, also on unreviewed tasks), streamed
to a file and read with the dataset build's reader (:func:`batchlabel.dataset.ls_export.iter_export_tasks`).

:func:`task_predictions` gives a task's predictions as objects, whichever form the export holds them in.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batchlabel.config import Config
from batchlabel.dataset.ls_export import (
    DatasetError,
    ExportFormatError,
    ExportSource,
    connect_project,
    download_export,
    export_file_source,
    task_list,
)

log = logging.getLogger(__name__)


def export_project_with_predictions(config: Config, *, dest_dir: Path, client: Any | None = None) -> ExportSource:
    """Export every task of ``label_studio.project`` with annotations and full predictions into ``dest_dir``.

    ``client`` is an SDK ``LabelStudio`` (default: :func:`batchlabel.sync.client.connect`). Raises
    :class:`~batchlabel.dataset.ls_export.DatasetError` when the project does not exist or the export fails.
    """
    from batchlabel.sync.client import with_retries

    ls, project = connect_project(config, client)
    title = config.label_studio.project
    exported_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    snapshot = with_retries(
        lambda: ls.projects.exports.create(
            project.id, title=f"batchlabel report {exported_at}",
            serialization_options={"predictions": {"only_id": False}},  # type: ignore[arg-type]
        ),
        what=f"create an export snapshot of project {project.id}",
    )
    status = snapshot.status
    snapshot_id = int(snapshot.id or 0)
    deadline = time.monotonic() + config.label_studio.timeout_s * 10
    while status not in ("completed", "failed"):  # Community builds it synchronously; others may queue it
        if time.monotonic() > deadline:
            raise DatasetError(f"project {project.id}: export snapshot {snapshot_id} still {status!r}; try again")
        time.sleep(0.5)
        status = with_retries(lambda: ls.projects.exports.get(project.id, snapshot_id),
                              what="read the export snapshot").status
    if status == "failed":
        raise DatasetError(f"project {project.id}: Label Studio failed to build export snapshot {snapshot_id}")
    path, size = download_export(lambda: ls.projects.exports.download(project.id, snapshot_id, export_type="JSON"),
                                 dest_dir=dest_dir, prefix=f"report-{project.id}-",
                                 what=f"download export snapshot {snapshot_id}")
    try:
        ls.projects.exports.delete(project.id, snapshot_id)
    except Exception as error:  # noqa: BLE001 - a leftover snapshot is harmless; the report is already on disk
        log.warning("could not delete export snapshot %s of project %s: %s", snapshot_id, project.id, error)
    log.info("exported project %r (id %s) with predictions: %.1f MB in %.1f s", title, project.id, size / 1e6,
             time.perf_counter() - started)
    return ExportSource(
        kind="project", path=path, label_config=project.label_config or "", exported_at=exported_at,
        project_id=project.id, project_title=title, url=config.label_studio.url,
        project_model_version=getattr(project, "model_version", None) or None,
    )


def report_source(config: Config, *, from_export: Path | None, dest_dir: Path, client: Any | None) -> ExportSource:
    """The export to report on: ``from_export`` (with the configured labeling config) or the live project."""
    if from_export is not None:
        return export_file_source(config, from_export)
    return export_project_with_predictions(config, dest_dir=dest_dir, client=client)


def prediction_id(value: Any, where: str) -> Any:
    """``value`` when it can be a prediction id (a JSON number, string or null); raises
    :class:`~batchlabel.dataset.ls_export.ExportFormatError` naming ``where`` for a list or an object."""
    if isinstance(value, (list, dict)):
        kind = "a list" if isinstance(value, list) else "an object"
        raise ExportFormatError(f"{where} must be a prediction id (a number or a string), got {kind}: {value!r:.60}")
    return value


def task_predictions(task: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The task's predictions with their ``result``, and how many were ids only (content unknown).

    Full predictions come from ``task.predictions`` (snapshot exports); for ids-only exports the annotations'
    embedded ``prediction`` objects are used. Each prediction is a dict with ``id``, ``result``, ``score``,
    ``model_version``. Raises :class:`~batchlabel.dataset.ls_export.ExportFormatError` naming the task when
    ``predictions`` or ``annotations`` is not a list, or a prediction id is a list or an object.
    """
    where = f"task {task.get('id')}"
    full: dict[Any, dict[str, Any]] = {}
    ids_only: set[Any] = set()
    for index, prediction in enumerate(task_list(task, "predictions")):
        if isinstance(prediction, dict) and isinstance(prediction.get("result"), list):
            identifier = prediction_id(prediction.get("id"), f"{where}: predictions[{index}].id")
            full[id(prediction) if identifier is None else identifier] = prediction
        elif isinstance(prediction, (int, str)):
            ids_only.add(prediction)
    for annotation in task_list(task, "annotations"):
        embedded = annotation.get("prediction") if isinstance(annotation, dict) else None
        if isinstance(embedded, dict) and isinstance(embedded.get("result"), list):
            identifier = prediction_id(embedded.get("id"),
                                       f"{where}: annotation {annotation.get('id')}: prediction.id")
            if identifier not in full:
                full[identifier] = embedded
    ids_only -= set(full)
    return list(full.values()), len(ids_only)
