"""The store of detectors ``batchlabel train`` fine-tuned on a project's reviewed tasks.

Layout: ``<cache.dir>/models/<project slug>/<version>/`` holding ``weights.pt`` and ``manifest.json``. A version
folder is written under a temporary name starting with ``.`` and renamed into place only when complete
(:func:`publish_model`), so a killed or failed training is never listed (its leftovers are removed by the next
:func:`publish_model` of the project). ``status``, ``report`` and ``preannotate.detector.model: trained`` read it
through :func:`list_models` / :func:`newest_model`.

Version name: ``<base stem>-ft-<number of reviewed tasks>-<6 hex digits of the reviewed data>``, e.g.
``yolo11n-ft-20-3fa9c2`` (:func:`version_name`).

Manifest keys: ``version``, ``created`` (UTC ISO 8601), ``classes`` (index order), ``reviewed_tasks`` (count),
``classes_without_examples`` (labels with no reviewed object: not asked for), ``task_ids`` and ``annotation_ids``
(the reviewed data it saw), ``data_digest``, ``split`` (``train_images``,
``val_images``), ``base``, ``epochs``, ``imgsz``, ``seconds``, ``metrics`` (``mAP50``, ``mAP50-95`` on val),
``trainer``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.pt"
MANIFEST_NAME = "manifest.json"
#: Prefix of folders being written (never listed).
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class TrainedModel:
    """One published model: ``path`` its folder, ``weights`` the ``.pt`` file, ``manifest`` as written."""

    version: str
    path: Path
    weights: Path
    manifest: dict[str, Any]

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self.manifest.get("classes", ()))

    @property
    def trained_classes(self) -> tuple[str, ...]:
        """The classes it saw reviewed examples of (the ones it is asked for)."""
        without = set(self.manifest.get("classes_without_examples") or ())
        return tuple(name for name in self.classes if name not in without)

    @property
    def reviewed_tasks(self) -> int:
        return int(self.manifest.get("reviewed_tasks", 0))

    @property
    def data_digest(self) -> str:
        return str(self.manifest.get("data_digest", ""))

    @property
    def metrics(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in (self.manifest.get("metrics") or {}).items()}

    def summary(self) -> dict[str, Any]:
        """What ``status`` lists: version, date, reviewed tasks, metrics, weights."""
        return {"version": self.version, "created": self.created, "reviewed_tasks": self.reviewed_tasks,
                "metrics": self.metrics, "weights": str(self.weights)}


def project_slug(project: str) -> str:
    """A folder name for a Label Studio project title (lower case, runs of other characters as ``-``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-")
    return slug or "project"


def project_models_dir(models_dir: Path, project: str) -> Path:
    """``<models_dir>/<project slug>`` (``models_dir`` is ``config.models_dir``)."""
    return Path(models_dir) / project_slug(project)


def version_name(base: Path, reviewed_tasks: int, data_digest: str) -> str:
    """``<base stem>-ft-<reviewed_tasks>-<first 6 hex digits of data_digest>``."""
    return f"{base.stem}-ft-{reviewed_tasks}-{data_digest[:6]}"


def _read(folder: Path) -> TrainedModel | None:
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    weights = folder / WEIGHTS_NAME
    if not isinstance(manifest, dict) or not weights.is_file():
        return None
    return TrainedModel(folder.name, folder, weights, manifest)


def list_models(models_dir: Path, project: str) -> list[TrainedModel]:
    """The project's published models, oldest first (by ``created``, then name); unreadable folders skipped."""
    root = project_models_dir(models_dir, project)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        model = _read(folder)
        if model is None:
            log.warning("%s: not a complete trained model (no readable manifest.json and weights.pt); ignored", folder)
            continue
        found.append(model)
    return sorted(found, key=lambda model: (_timestamp(model.created), model.version))


def newest_model(models_dir: Path, project: str) -> TrainedModel | None:
    """The project's most recently published model, None before the first ``batchlabel train``."""
    models = list_models(models_dir, project)
    return models[-1] if models else None


def _timestamp(created: str) -> float:
    try:
        return datetime.fromisoformat(created).timestamp()
    except ValueError:
        return 0.0


def partial_dir(models_dir: Path, project: str, version: str) -> Path:
    """A fresh temporary folder for a version being written (created; never listed)."""
    root = project_models_dir(models_dir, project)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{PARTIAL_PREFIX}{version}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def publish_model(partial: Path, weights: Path, manifest: dict[str, Any]) -> TrainedModel:
    """Copy ``weights`` into ``partial`` as ``weights.pt``, write the manifest, and rename ``partial`` to
    ``<project>/<manifest["version"]>`` (refused when that version exists). Leftover partial folders of processes
    that no longer run are removed."""
    version = str(manifest["version"])
    target = partial.parent / version
    if target.exists():
        raise FileExistsError(f"{target}: model version exists already")
    if weights.resolve() != (partial / WEIGHTS_NAME).resolve():
        shutil.copyfile(weights, partial / WEIGHTS_NAME)
    temporary = partial / f"{MANIFEST_NAME}.tmp"
    temporary.write_text(json.dumps(manifest, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, partial / MANIFEST_NAME)
    os.replace(partial, target)
    remove_stale_partials(target.parent)
    model = _read(target)
    assert model is not None
    return model


def remove_stale_partials(project_dir: Path) -> list[Path]:
    """Remove partial folders left by processes that are gone (killed mid-training); returns what was removed."""
    from batchlabel.sync.server import may_own

    removed = []
    for folder in project_dir.glob(f"{PARTIAL_PREFIX}*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or may_own(int(pid), folder)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed

