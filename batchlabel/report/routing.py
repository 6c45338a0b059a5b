"""Uncertain images to reviewers first: the least certain unreviewed tasks, and a Data Manager tab ordered that way;
and the tab "diverse first" (the order of :mod:`batchlabel.report.diverse`, written as a rank into the tasks' data).

A prediction's ``score`` is its least certain object's score (:func:`batchlabel.report.metrics.prediction_score`;
``batchlabel run``/``serve`` write it so), so Label Studio's Data Manager ordered by prediction score, ascending,
lists the least certain images first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from batchlabel.report.metrics import UnreviewedTask

log = logging.getLogger(__name__)

#: The Data Manager tab :func:`ensure_uncertain_tab` creates.
TAB_TITLE = "uncertain first"
#: The Data Manager tab :func:`ensure_diverse_tab` creates, and the task data key it orders by
#: (written by :func:`write_diverse_ranks` on the ranked tasks only).
DIVERSE_TAB_TITLE = "diverse first"
DIVERSE_RANK_KEY = "batchlabel_diverse_rank"


def task_url(label_studio_url: str | None, project_id: int | None, task_id: int) -> str | None:
    """The labeling page of a task (``<url>/projects/<project>/data?task=<task>``), None without a URL or project."""
    if not label_studio_url or project_id is None:
        return None
    return f"{label_studio_url.rstrip('/')}/projects/{project_id}/data?task={task_id}"


def least_certain(tasks: Sequence[UnreviewedTask], count: int, *, label_studio_url: str | None,
                  project_id: int | None) -> list[dict[str, Any]]:
    """The ``count`` unreviewed tasks with the lowest score (ties: lower task id first), with their URLs."""
    chosen = sorted(tasks, key=lambda task: (task.score, task.task_id))[: max(count, 0)]
    return [
        {"task_id": task.task_id, "score": round(task.score, 4), "model_version": task.model_version,
         "objects": task.objects, "url": task_url(label_studio_url, project_id, task.task_id)}
        for task in chosen
    ]


def ensure_uncertain_tab(client: Any, project_id: int) -> int:
    """A Data Manager tab titled :data:`TAB_TITLE`: unreviewed tasks, lowest prediction score first. Returns its id.

    An existing tab with that title is updated to the same filter and ordering, never duplicated.
    """
    return _ensure_tab(client, project_id, {"title": TAB_TITLE, "ordering": ["tasks:predictions_score"],
                                            "filters": _UNREVIEWED})


def ensure_diverse_tab(client: Any, project_id: int) -> int:
    """A Data Manager tab titled :data:`DIVERSE_TAB_TITLE`: unreviewed tasks by ``data.``:data:`DIVERSE_RANK_KEY`
    ascending (numeric; tasks without a rank last). Returns its id; an existing tab of that title is updated."""
    return _ensure_tab(client, project_id, {
        "title": DIVERSE_TAB_TITLE, "ordering": [_DIVERSE_ORDERING], "filters": _UNREVIEWED,
        "columnsDisplayType": {_DIVERSE_ORDERING: "Number"},  # numeric ordering: 10 after 9
    })


def write_diverse_ranks(client: Any, tasks: Iterable[tuple[int, Mapping[str, Any]]], ranks: Mapping[int, int]) -> int:
    """Set ``data[DIVERSE_RANK_KEY]`` of the given ``(task id, task data)`` to ``ranks[task id]`` (1-based), and drop
    it from those given without a rank (a previous run's); tasks already right are not touched. Returns how many
    tasks were changed (one ``PATCH /api/tasks/<id>`` each, the rest of ``data`` sent back unchanged). A task Label
    Studio refuses (deleted meanwhile) is named in a warning and the others go on."""
    from batchlabel.sync.client import LabelStudioError, request_json

    changed = 0
    for task_id, data in tasks:
        rank = ranks.get(task_id)
        if data.get(DIVERSE_RANK_KEY) == rank or (rank is None and DIVERSE_RANK_KEY not in data):
            continue
        new_data = {key: value for key, value in data.items() if key != DIVERSE_RANK_KEY}
        if rank is not None:
            new_data[DIVERSE_RANK_KEY] = rank
        try:
            request_json(client, "PATCH", f"api/tasks/{task_id}/", body={"data": new_data})
        except LabelStudioError as error:
            log.warning("task %s: cannot write its diverse rank (%s); the tab lists it without one", task_id, error)
            continue
        changed += 1
    return changed


_UNREVIEWED = {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
]}
_DIVERSE_ORDERING = f"tasks:data.{DIVERSE_RANK_KEY}"


def _ensure_tab(client: Any, project_id: int, data: Mapping[str, Any]) -> int:
    """The project's Data Manager tab titled ``data["title"]``, updated to ``data`` or created. Returns its id."""
    from batchlabel.sync.client import request_json

    title = data["title"]
    views = request_json(client, "GET", "api/dm/views/", params={"project": project_id}) or []
    for view in views:
        if isinstance(view, dict) and (view.get("data") or {}).get("title") == title:
            request_json(client, "PATCH", f"api/dm/views/{view['id']}/", body={"project": project_id, "data": data})
            log.info("updated the Data Manager tab %r (id %s) of project %s", title, view["id"], project_id)
            return int(view["id"])
    created = request_json(client, "POST", "api/dm/views/", body={"project": project_id, "data": data})
    log.info("created the Data Manager tab %r (id %s) of project %s", title, created["id"], project_id)
    return int(created["id"])
