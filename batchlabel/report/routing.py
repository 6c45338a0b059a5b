"""Uncertain images to reviewers first: the least certain unreviewed tasks, and a Data Manager tab ordered that way.

A prediction's ``score`` is its least certain object's score (:func:`batchlabel.report.metrics.prediction_score`;
``batchlabel run``/``serve`` write it so), so Label Studio's Data Manager ordered by prediction score, ascending,
lists the least certain images first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from batchlabel.report.metrics import UnreviewedTask

log = logging.getLogger(__name__)

#: The Data Manager tab :func:`ensure_uncertain_tab` creates.
TAB_TITLE = "uncertain first"


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
    from batchlabel.sync.client import request_json

    data = {
        "title": TAB_TITLE,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
        ]},
    }
    views = request_json(client, "GET", "api/dm/views/", params={"project": project_id}) or []
    for view in views:
        if isinstance(view, dict) and (view.get("data") or {}).get("title") == TAB_TITLE:
            request_json(client, "PATCH", f"api/dm/views/{view['id']}/", body={"project": project_id, "data": data})
            log.info("updated the Data Manager tab %r (id %s) of project %s", TAB_TITLE, view["id"], project_id)
            return int(view["id"])
    created = request_json(client, "POST", "api/dm/views/", body={"project": project_id, "data": data})
    log.info("created the Data Manager tab %r (id %s) of project %s", TAB_TITLE, created["id"], project_id)
    return int(created["id"])
