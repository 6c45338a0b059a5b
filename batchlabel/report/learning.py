"""The learning curve: per model version, how many reviewed tasks it was trained on, next to its acceptance.

``batchlabel train`` stores each model under ``<cache.dir>/models/<project>/<version>/manifest.json`` with its
``model_version`` (the version name, e.g. ``yolo11n-ft-20-3fa9c2``; else the folder's name) and ``reviewed_tasks``
(else the length of ``reviewed_task_ids``). A prediction's ``model_version`` belongs to a trained model when it is
that name or holds it as a whole token (batchlabel's prediction versions name the detector among the model, mode
and thresholds); the longest such name wins. Versions that are no trained model (COCO detectors, SAM-only modes,
other tools) are trained on nothing: ``None``, shown as "-".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The key added to each ``model_versions`` entry of the report.
TRAINED_ON = "trained_on_reviewed_tasks"


def trained_model_counts(cache_dir: Path) -> dict[str, int]:
    """Trained model version name -> the number of reviewed tasks it was trained on, over every project's models.

    Reads ``<cache_dir>/models/*/*/manifest.json``; an unreadable or malformed manifest is skipped with a warning
    naming it (a training in progress writes to a temporary folder and has none).
    """
    counts: dict[str, int] = {}
    for manifest in sorted((cache_dir / "models").glob("*/*/manifest.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            name = data.get("model_version") or data.get("version") or manifest.parent.name
            reviewed = data.get("reviewed_tasks")
            if reviewed is None:
                reviewed = len(data["reviewed_task_ids"])
            if not isinstance(name, str) or isinstance(reviewed, bool) or not isinstance(reviewed, int):
                raise ValueError("model_version or reviewed_tasks of the wrong type")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("%s: not a readable model manifest (%s); its version shows no trained-on count",
                        manifest, error)
            continue
        counts[name] = reviewed
    return counts


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
