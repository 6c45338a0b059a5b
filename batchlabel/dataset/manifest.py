"""The build manifest (``manifest.json``): what a dataset was built from, to reproduce it and to skip rebuilds.

Keys: ``batchlabel_version``, ``built_at`` (UTC ISO 8601), ``source`` (Label Studio URL, project id and title, or the
export file; export time), ``options`` (split, seed, template, segmentation, ...), ``fingerprint``, ``categories``,
``counts``, ``model_versions`` (of the predictions the annotations started from, where Label Studio says),
``images`` (per image: id, task id, file name, sha256, size, split, the annotation used with its id and timestamps,
its annotation ids in the COCO files) and ``warnings``.

The ``fingerprint`` is a sha256 over every task's (id, image, counted annotation id and ``updated_at``), the label
list and the options that change the output; ``build-dataset --if-changed`` rebuilds only when it differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
#: Bump when the same inputs would give a different dataset (forces one rebuild after an upgrade).
FORMAT_VERSION = 1


def fingerprint(
    task_entries: Iterable[tuple[Any, ...]], *, labels: list[str], options: dict[str, Any]
) -> str:
    """sha256 hex of the sorted ``(task id, image url, annotation id, updated_at)`` entries, labels and options."""
    digest = hashlib.sha256()
    head = {"format": FORMAT_VERSION, "labels": labels, "options": options}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    lines = sorted(json.dumps(entry, default=str) for entry in task_entries)
    for line in lines:
        digest.update(b"\n")
        digest.update(line.encode())
    return digest.hexdigest()


def read_manifest(dataset_dir: Path) -> dict[str, Any] | None:
    """The manifest of a built dataset, or None when there is none or it cannot be read."""
    path = Path(dataset_dir) / MANIFEST_NAME
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(dataset_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (temporary file + rename)."""
    path = Path(dataset_dir) / MANIFEST_NAME
    temporary = path.with_suffix(f".tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1, sort_keys=False, default=str)
        handle.write("\n")
    os.replace(temporary, path)
    return path
