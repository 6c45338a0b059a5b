"""`batchlabel up` as a user runs it: a second start reuses the data dir, the project and the tasks."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from batchlabel.sync.server import TEMPLATE_CREDENTIALS
from tests.e2e.stack import UpProcess, start_up, write_up_config

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]


def _get(up: UpProcess, path: str, **params: object) -> object:
    response = httpx.get(f"{up.url}{path}", params=params, timeout=30,
                         headers={"Authorization": f"Token {TEMPLATE_CREDENTIALS.api_key}"})
    response.raise_for_status()
    return response.json()


def _tasks(up: UpProcess) -> list[dict]:
    body = _get(up, "/api/tasks", project=up.project_id, page_size=100)
    return body["tasks"] if isinstance(body, dict) else body


def _wait_for_tasks(up: UpProcess, count: int, timeout_s: float = 180.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tasks = _tasks(up)
        if len(tasks) >= count:
            return tasks
        time.sleep(1.0)
    raise AssertionError(f"expected {count} tasks within {timeout_s} s\n{up.text()}")


def test_restarting_up_keeps_project_tasks_and_annotations(tmp_path: Path) -> None:
    config_path = write_up_config(tmp_path)
    images = sorted((tmp_path / "root").rglob("*.jpg"))
    first = start_up(config_path)
    try:
        tasks = _wait_for_tasks(first, len(images))
        annotated = tasks[0]["id"]
        response = httpx.post(
            f"{first.url}/api/tasks/{annotated}/annotations", timeout=30,
            headers={"Authorization": f"Token {TEMPLATE_CREDENTIALS.api_key}"},
            json={"result": [{"from_name": "rect", "to_name": "image", "type": "rectanglelabels",
                              "original_width": 100, "original_height": 100, "image_rotation": 0,
                              "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                        "rectanglelabels": ["cat"]}}]},
        )
        assert response.status_code == 201
        backends = _get(first, "/api/ml", project=first.project_id)
        assert len(backends) == 1 and backends[0]["is_interactive"]
    finally:
        assert first.stop() == 0

    second = start_up(config_path)
    try:
        assert second.project_id == first.project_id
        projects = _get(second, "/api/projects", page_size=100)["results"]
        assert [p["title"] for p in projects].count("cats e2e") == 1
        time.sleep(3.0)  # the watcher's initial scan has run: it must not add tasks again
        tasks_after = _tasks(second)
        assert len(tasks_after) == len(images)
        assert len({t["data"]["image"] for t in tasks_after}) == len(images)
        assert len(_get(second, f"/api/tasks/{annotated}/annotations")) == 1
        assert len(_get(second, "/api/ml", project=second.project_id)) == 1, "the backend is not connected twice"
        assert "shown once" not in second.text(), "credentials are printed only at the first start"
    finally:
        assert second.stop() == 0
