"""Build the dataset when the labeling is done: the function ``watch`` calls (webhook or polling).

:func:`build_if_complete` checks the project against a :class:`CompletionRule` with Label Studio's own counters (one
cheap request), and when it is complete and the annotations changed since the last build, builds into a new
versioned folder ``<dataset.out>/vNNNN-<UTC time>/`` and points the ``<dataset.out>/latest`` symlink at it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

LATEST = "latest"
_VERSION = re.compile(r"v(\d{4,})-")


@dataclass(frozen=True)
class CompletionRule:
    """When a project counts as complete.

    - ``"all"``: every task has a non-cancelled annotation.
    - ``"fraction"``: at least ``fraction`` of the tasks have one.
    - ``"tag"``: the project's description contains ``#<tag>`` (``#build``): the team says when.
    """

    mode: Literal["all", "fraction", "tag"] = "all"
    fraction: float = 1.0
    tag: str = "build"

    def __post_init__(self) -> None:
        if self.mode not in ("all", "fraction", "tag"):
            raise ValueError(f"completion rule mode must be all, fraction or tag, got {self.mode!r}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"completion fraction must be in (0, 1], got {self.fraction}")


def is_complete(project: Any, rule: CompletionRule) -> tuple[bool, str]:
    """Whether ``project`` (SDK project: ``task_number``, ``num_tasks_with_annotations``, ``description``) is done."""
    total = int(getattr(project, "task_number", 0) or 0)
    done = int(getattr(project, "num_tasks_with_annotations", 0) or 0)
    progress = f"{done}/{total} tasks annotated"
    if rule.mode == "tag":
        description = (getattr(project, "description", "") or "").lower()
        tagged = re.search(rf"(^|\s)#{re.escape(rule.tag.lower())}\b", description) is not None
        return tagged, f"{progress}; project description {'has' if tagged else 'lacks'} #{rule.tag}"
    if total == 0:
        return False, "the project has no tasks"
    needed = total if rule.mode == "all" else rule.fraction * total
    return done >= needed, f"{progress} (rule: {rule.mode}{'' if rule.mode == 'all' else f' {rule.fraction:g}'})"


def next_version_dir(root: Path, *, now: datetime | None = None) -> Path:
    """``root/vNNNN-YYYYmmddTHHMMSSZ`` with NNNN one more than the highest existing version."""
    numbers = [int(m.group(1)) for p in root.glob("v*") if (m := _VERSION.match(p.name)) and p.is_dir()]
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return root / f"v{max(numbers, default=0) + 1:04d}-{stamp}"


def point_latest(root: Path, version_dir: Path) -> Path:
    """Atomically make ``root/latest`` a relative symlink to ``version_dir``."""
    link = root / LATEST
    temporary = root / f".{LATEST}.tmp-{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(version_dir.name, temporary)
    os.replace(temporary, link)
    return link


def build_if_complete(
    config: Any,
    *,
    rule: CompletionRule = CompletionRule(),
    client: Any | None = None,
    box_masker: Any | None = None,
) -> Path | None:
    """Build a new dataset version when the project is complete and changed since ``latest``.

    Returns the new version folder, or None (not complete yet, or nothing changed; the reason is logged). Raises
    :class:`~batchlabel.dataset.ls_export.DatasetError` when the project does not exist or nothing can be built.
    """
    from batchlabel.dataset.builder import BuildOptions, build_dataset
    from batchlabel.dataset.ls_export import DatasetError
    from batchlabel.sync.client import connect, find_project

    ls = client if client is not None else connect(config.label_studio)
    project = find_project(ls, config.label_studio.project)
    if project is None:
        raise DatasetError(f"Label Studio project {config.label_studio.project!r} not found")
    complete, reason = is_complete(project, rule)
    if not complete:
        log.info("dataset not built: project %r is not complete (%s)", config.label_studio.project, reason)
        return None
    root = Path(config.dataset.out)
    root.mkdir(parents=True, exist_ok=True)
    version = next_version_dir(root)
    options = BuildOptions(
        out=version,
        val_fraction=config.dataset.val_fraction,
        seed=config.dataset.seed,
        template=config.dataset.template,
        if_changed=True,
        compare_with=root / LATEST,
        mask_boxes=box_masker is not None,
        formats=config.dataset.formats,
        polygon_tolerance_px=config.dataset.polygon_tolerance_px,
    )
    report = build_dataset(config, options, client=ls, box_masker=box_masker)
    if report.status == "unchanged":
        log.info("dataset not rebuilt: annotations unchanged since %s", (root / LATEST).resolve())
        return None
    point_latest(root, version)
    log.info("project %r complete (%s): dataset built at %s (%d images, %d objects%s); %s now points there",
             config.label_studio.project, reason, version, report.counts["images"], report.counts["objects"],
             f", {len(report.failures)} tasks failed" if report.failures else "", root / LATEST)
    return version
