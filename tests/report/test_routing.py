"""Routing: a prediction's score is its least certain object's; the least certain unreviewed tasks come first."""

from __future__ import annotations

from typing import Any

import pytest

from batchlabel.report.metrics import UnreviewedTask, prediction_score
from batchlabel.report.routing import least_certain, task_url


@pytest.mark.parametrize(
    ("prediction", "score"),
    [
        ({"score": 0.9, "result": [{"score": 0.95}, {"score": 0.61}, {"score": 0.8}]}, 0.61),  # items win
        ({"score": 0.7, "result": [{"type": "rectanglelabels"}]}, 0.7),  # no item scores: the prediction's
        ({"score": None, "result": []}, None),
        ({"score": True, "result": [{"score": False}]}, None),  # booleans are not scores
    ],
)
def test_prediction_score_is_the_least_certain_object(prediction: dict[str, Any], score: float | None) -> None:
    assert prediction_score(prediction) == score


def test_least_certain_orders_by_score_then_task_id_with_urls() -> None:
    tasks = [UnreviewedTask(5, 0.8, "v", 2), UnreviewedTask(3, 0.4, "v", 1), UnreviewedTask(2, 0.4, "v", 3)]
    listed = least_certain(tasks, 2, label_studio_url="http://ls:8080/", project_id=7)
    assert [(t["task_id"], t["score"]) for t in listed] == [(2, 0.4), (3, 0.4)]
    assert listed[0]["url"] == "http://ls:8080/projects/7/data?task=2"
    assert least_certain(tasks, 0, label_studio_url=None, project_id=None) == []
    assert task_url(None, 7, 1) is None and task_url("http://ls", None, 1) is None
