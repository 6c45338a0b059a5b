"""The learning curve: per model version, how many reviewed tasks it was trained on, next to its acceptance.

``batchlabel train`` stores each model under ``<cache.dir>/models/<project>/<version>/`` with a manifest counting
its ``reviewed_tasks`` (:mod:`batchlabel.annotate.trained_models`); the version is named like
``yolo11n-ft-20-3fa9c2``. A prediction's ``model_version`` belongs to a trained model when it is that name or holds
it as a whole token (batchlabel's prediction versions name the detector, ``det=ultralytics:<version>@<digest>``,
among the model, mode and thresholds); the longest such name wins. Versions that are no trained model (COCO
detectors, SAM-only modes, other tools) are trained on nothing: ``None``, shown as "-".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The key added to each ``model_versions`` entry of the report.
TRAINED_ON = "trained_on_reviewed_tasks"


def trained_model_counts(models_dir: Path, project: str) -> dict[str, int]:
    """The project's trained model versions -> the number of reviewed tasks each was trained on
    (:func:`batchlabel.annotate.trained_models.list_models`: incomplete folders are skipped with a warning)."""
    from batchlabel.annotate.trained_models import list_models

    return {model.version: model.reviewed_tasks for model in list_models(models_dir, project)}


def trained_on(model_version: str, counts: Mapping[str, int]) -> int | None:
    """The reviewed tasks behind ``model_version`` (see the module docstring), None when it is no trained model."""
    if model_version in counts:
        return counts[model_version]
    found = [name for name in counts
             if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", model_version)]
    return counts[max(found, key=len)] if found else None


def add_learning_curve(report: dict[str, Any], counts: Mapping[str, int]) -> None:
    """Add :data:`TRAINED_ON` to every ``report["model_versions"]`` entry and ``report["learning_curve"]``: one row
    per version (``model_version``, trained on, predicted objects in reviewed tasks, accepted, ``acceptance`` =
    accepted / reviewed or None), untrained versions first, then by the reviewed tasks trained on."""
    rows = []
    for version, scope in report["model_versions"].items():
        scope[TRAINED_ON] = trained_on(version, counts)
        reviewed = sum(row["reviewed"] for row in scope["labels"].values())
        accepted = sum(row["accepted"] for row in scope["labels"].values())
        rows.append({"model_version": version, TRAINED_ON: scope[TRAINED_ON], "reviewed_objects": reviewed,
                     "accepted": accepted, "acceptance": round(accepted / reviewed, 4) if reviewed else None})
    rows.sort(key=lambda row: (row[TRAINED_ON] is not None, row[TRAINED_ON] or 0, row["model_version"]))
    report["learning_curve"] = rows
