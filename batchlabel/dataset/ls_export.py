"""Reading Label Studio JSON exports: streaming tasks, choosing the annotation that counts, finding the image file.

A JSON export (``export_type="JSON"``, the format Label Studio's "Export > JSON" button writes and
``projects.exports.download_sync`` returns) is one JSON array of task objects. It is read as a stream with ``ijson``
so memory stays bounded however large the project is. A live project is exported to a temporary file first, so both
sources go through exactly the same reader and give the same dataset. A file nested deeper than
:data:`MAX_EXPORT_DEPTH` levels is refused before it is parsed (:mod:`batchlabel.dataset.json_nesting`): a Label
Studio export nests about 10 (a polygon point of a prediction embedded in an annotation).

Which annotation counts for a task (explicit, documented): the ground-truth annotation when one is marked (the
latest of them if several), else the latest non-cancelled annotation (by ``updated_at``, then ``created_at``, then
``id``). Cancelled ("skipped") annotations never count.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Levels of ``[``/``{`` an export may nest: the task array is level 1, a brush's ``rle`` level 8, a polygon point 9
#: (10 in a prediction embedded in an annotation). Deeper files are refused naming the byte offset and the task, in
#: bounded memory and time.
MAX_EXPORT_DEPTH = 100


class DatasetError(Exception):
    """A problem with the source data a user can act on; the message names the task, file or key."""


class ExportFormatError(DatasetError):
    """The export file is not a Label Studio JSON export, or a task in it is malformed."""


@dataclass(frozen=True)
class ExportSource:
    """Where the tasks come from, for the manifest.

    ``kind`` is ``"project"`` (exported live through the SDK) or ``"export"`` (a file given by the user).
    """

    kind: str
    path: Path
    label_config: str
    exported_at: str
    project_id: int | None = None
    project_title: str | None = None
    url: str | None = None
    project_model_version: str | None = None
    #: model version -> number of predictions in the project (Label Studio's ``model-versions`` counters)
    prediction_model_versions: dict[str, int] | None = None


def iter_export_tasks(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the task objects of a Label Studio JSON export file, in file order.

    Raises :class:`ExportFormatError` naming the file (and the task index) when the file is not a JSON array of
    objects, the JSON is broken, or it nests deeper than :data:`MAX_EXPORT_DEPTH` levels (then also the byte offset).
    """
    import ijson

    from batchlabel.dataset.json_nesting import JsonNestingError, NestingLimitedReader

    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ExportFormatError(f"{path}: cannot read the export file: {error.strerror}") from None
    with handle:
        head = handle.read(4096).lstrip()
        if not head.startswith(b"["):
            what = "an empty file" if not head else f"starts with {head[:20]!r}"
            raise ExportFormatError(
                f"{path}: not a Label Studio JSON export (expected a JSON array of tasks, got {what}); "
                "export with 'JSON' (not JSON_MIN, CSV or COCO)"
            )
        handle.seek(0)
        index = -1
        reader = NestingLimitedReader(handle, max_depth=MAX_EXPORT_DEPTH)
        try:
            for index, task in enumerate(ijson.items(reader, "item", use_float=True)):  # noqa: B007
                if not isinstance(task, dict):
                    raise ExportFormatError(f"{path}: item {index}: expected a task object, got {type(task).__name__}")
                yield task
        except ijson.JSONError as error:
            raise ExportFormatError(f"{path}: broken JSON after task number {index + 1}: {error}") from None
        except JsonNestingError as error:
            raise ExportFormatError(
                f"{path}: item {error.item} (byte {error.offset}): JSON nested deeper than {error.max_depth} levels; "
                "a Label Studio export nests about 10, so this is not one (or it is damaged)"
            ) from None


def timestamp(annotation: Mapping[str, Any], key: str) -> float:
    """``annotation[key]`` (an ISO 8601 time, ``Z`` or an offset; naive = UTC) as seconds; -inf when absent or
    unreadable (so it sorts first)."""
    value = annotation.get(key)
    if not isinstance(value, str) or not value:
        return float("-inf")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return float("-inf")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def task_list(task: Mapping[str, Any], key: str) -> list[Any]:
    """``task[key]`` (``annotations``, ``predictions``) as a list, ``[]`` when absent or empty. Raises
    :class:`ExportFormatError` naming the task when it is anything else."""
    value = task.get(key) or []
    if not isinstance(value, list):
        raise ExportFormatError(f"task {task.get('id')}: {key!r} must be a list, got {type(value).__name__}")
    return value


def select_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The annotation that counts for ``task`` (see the module docstring), or None when there is none."""
    annotations = task_list(task, "annotations")
    usable = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise ExportFormatError(
                f"task {task.get('id')}: an annotation is {type(annotation).__name__}, not an object"
            )
        if not annotation.get("was_cancelled"):
            usable.append(annotation)
    if not usable:
        return None
    pool = [a for a in usable if a.get("ground_truth")] or usable

    def recency(annotation: dict[str, Any]) -> tuple[float, float, int]:
        identifier = annotation.get("id")
        return (
            timestamp(annotation, "updated_at"),
            timestamp(annotation, "created_at"),
            identifier if isinstance(identifier, int) else -1,
        )

    return max(pool, key=recency)


def image_rel_path(task: dict[str, Any], image_key: str) -> str:
    """The document-root-relative path of the task's image, from ``data[image_key]`` = ``/data/local-files/?d=...``.

    Raises :class:`DatasetError` naming the task for other URL kinds (uploads, http) and missing keys.
    """
    from batchlabel.sync.client import rel_path_from_url

    data = task.get("data")
    if not isinstance(data, dict) or image_key not in data:
        raise ExportFormatError(f"task {task.get('id')}: data.{image_key} is missing (the labeling config's image)")
    url = data[image_key]
    rel = rel_path_from_url(url) if isinstance(url, str) else None
    if not rel:
        raise DatasetError(
            f"task {task.get('id')}: data.{image_key} = {str(url)[:120]!r} is not a /data/local-files/?d=... URL; "
            "batchlabel builds datasets from images under storage.root only"
        )
    return rel


def resolve_image_path(rel_path: str, root: Path, *, task_id: Any) -> Path:
    """``root / rel_path``, refusing paths that leave ``root`` (``..``, absolute paths, symlinks out) with the check
    ``serve`` and ingestion use (:func:`batchlabel.infer.confine.confine_relative`). A missing file is returned as
    is (the builder reports it as missing)."""
    from batchlabel.infer.confine import PathConfinementError, confine_relative

    try:
        return confine_relative(rel_path, root)
    except PathConfinementError as error:
        if error.outside:
            raise DatasetError(f"task {task_id}: image path {rel_path!r} points outside storage.root "
                               f"{Path(root).resolve()}: {error.reason}") from None
        return Path(root).resolve() / rel_path


def connect_project(config: Any, client: Any = None) -> tuple[Any, Any]:
    """``(client, project)`` for the config's Label Studio project (``client`` default:
    :func:`batchlabel.sync.client.connect`). Raises :class:`DatasetError` naming the project when it does not exist."""
    from batchlabel.sync.client import connect, find_project

    ls = client if client is not None else connect(config.label_studio)
    title = config.label_studio.project
    project = find_project(ls, title)
    if project is None:
        raise DatasetError(
            f"Label Studio project {title!r} (label_studio.project) not found at {config.label_studio.url}"
        )
    return ls, project


def export_project(config: Any, *, dest_dir: Path, client: Any | None = None) -> ExportSource:
    """Export the config's Label Studio project (every task, annotated or not) into a JSON file under ``dest_dir``.

    ``client`` is an SDK ``LabelStudio`` (default: :func:`batchlabel.sync.client.connect` on the config). The
    export streams to disk in chunks; nothing is held in memory. Raises :class:`DatasetError` when the project
    does not exist.
    """
    from batchlabel.sync.client import LabelStudioError, request_json

    ls, project = connect_project(config, client)
    title = config.label_studio.project
    exported_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    path, size = download_export(
        lambda: ls.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True),
        dest_dir=dest_dir, prefix=f"project-{project.id}-", what=f"export project {project.id}",
    )
    log.info("exported project %r (id %s): %.1f MB in %.1f s", title, project.id, size / 1e6,
             time.perf_counter() - started)
    try:
        versions = request_json(ls, "GET", f"api/projects/{project.id}/model-versions/")
    except LabelStudioError as error:
        log.warning("cannot read the project's prediction model versions: %s", error)
        versions = None
    if not isinstance(versions, dict):
        versions = None
    return ExportSource(
        kind="project",
        path=path,
        label_config=project.label_config or "",
        exported_at=exported_at,
        project_id=project.id,
        project_title=title,
        url=config.label_studio.url,
        project_model_version=getattr(project, "model_version", None) or None,
        prediction_model_versions={str(k): int(v) for k, v in versions.items()} if versions else None,
    )


def download_export(
    chunks: Callable[[], Iterable[bytes]], *, dest_dir: Path, prefix: str, what: str
) -> tuple[Path, int]:
    """Stream a Label Studio export (``chunks()``: the SDK's byte iterator, called again on each retry) into a new
    ``<prefix>*.json`` file under ``dest_dir``, with :func:`batchlabel.sync.client.with_retries`. Nothing is held in
    memory. Returns (the file, its size in bytes)."""
    from batchlabel.sync.client import with_retries

    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest_dir, prefix=prefix, suffix=".json", delete=False) as handle:

        def download() -> int:
            handle.seek(0)
            handle.truncate()
            size = 0
            for chunk in chunks():
                handle.write(chunk)
                size += len(chunk)
            return size

        size = with_retries(download, what=what)
    return Path(handle.name), size


def export_file_source(config: Any, path: Path) -> ExportSource:
    """A user's export file with the configured labeling config (``--from-export`` of build-dataset and report)."""
    from batchlabel.sync.label_config import load_label_config

    return file_source(path, load_label_config(config.label_studio.labels, config.label_studio.label_config))


def file_source(path: Path, label_config: str) -> ExportSource:
    """An :class:`ExportSource` for a user-given export file (its modification time stands for the export time)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: export file not found")
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return ExportSource(kind="export", path=path, label_config=label_config, exported_at=mtime)


def image_data_key(label_config: str) -> str:
    """The task data key of the labeling config's image (:func:`batchlabel.sync.label_config.parse_control_names`)."""
    import xml.etree.ElementTree as ET

    from batchlabel.sync.label_config import parse_control_names

    try:
        names, _ = parse_control_names(label_config)
    except ET.ParseError as error:
        raise DatasetError(f"the project's labeling config is not valid XML: {error}") from None
    return names.image_key
