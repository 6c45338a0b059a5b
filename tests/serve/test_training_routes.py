"""``/webhook`` START_TRAINING, ``/train`` and annotation webhooks in process: answered at once, a background
training started (a real child process: the stand-in of ``tests/annotate/training_stand_in.py``), one at a time,
bad bodies 422, unknown actions ignored. The real ``batchlabel train`` behind the real Label Studio's button:
``tests/serve/test_labelstudio_training.py``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from batchlabel.annotate.background_training import BackgroundTrainer
from batchlabel.annotate.training_trigger import ReviewedCountTrigger
from batchlabel.serve.app import create_app
from batchlabel.serve.training import ServeTraining
from tests.annotate.training_stand_in import stand_in_command

WAIT_S = 60.0


@pytest.fixture
def app_and_gate(offline_config: Any, litemedsam: Any, tmp_path: Path) -> Any:
    config = offline_config(litemedsam)
    app = create_app(config, model=litemedsam)
    command, gate = stand_in_command(tmp_path)
    training: ServeTraining = app.state.training
    training.trainer = BackgroundTrainer(tmp_path / "models", command)
    training.unavailable = ""
    return app, gate


def test_start_training_both_ways_answered_at_once_one_at_a_time(app_and_gate: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    app, gate = app_and_gate
    caplog.set_level(logging.INFO)
    trainer: BackgroundTrainer = app.state.training.trainer
    title = app.state.backend.config.label_studio.project
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7, "title": title}})
        assert first.status_code == 200 and first.json() == {"status": "started"}
        assert trainer.busy  # the stand-in waits for its gate: the answer did not wait for the training
        legacy = client.post("/train", json={"annotations": [{"id": 1, "data": {}, "annotations": []}],
                                             "project": "7.1700000000", "label_config": "<View/>"})
        assert legacy.status_code == 200 and legacy.json() == {"status": "queued"}
        again = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 7, "title": title}})
        assert again.json() == {"status": "coalesced"}
        other = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 8, "title": "other"}})
        assert other.json()["status"] == "ignored"
        assert client.get("/health").status_code == 200
        gate.touch()
        assert trainer.wait(WAIT_S)
    assert [outcome.exit_code for outcome in trainer.outcomes] == [0, 0]
    assert [outcome.model_version for outcome in trainer.outcomes] == ["stand-in-0", "stand-in-1"]
    assert "training started (Label Studio: Start training)" in caplog.text
    assert ("training ended (Label Studio: Start training (/train)): exit 0 (ok), model_version stand-in-1"
            in caplog.text)


def test_unknown_actions_ignored_bad_bodies_422(app_and_gate: Any, caplog: pytest.LogCaptureFixture) -> None:
    app, _gate = app_and_gate
    caplog.set_level(logging.DEBUG, logger="batchlabel.serve.app")
    with TestClient(app, raise_server_exceptions=False) as client:
        unknown = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}})
        assert unknown.status_code == 200 and unknown.json() == {"status": "ok"}
        assert any(r.levelno == logging.DEBUG and "PROJECT_UPDATED" in r.getMessage() for r in caplog.records)
        for path, body in [("/webhook", [1, 2]), ("/webhook", {"action": ["START_TRAINING"]}),
                           ("/webhook", {"action": "START_TRAINING", "project": [1]}),
                           ("/train", {"annotations": "all"}), ("/train", "text")]:
            answer = client.post(path, json=body)
            assert answer.status_code == 422 and "error" in answer.json(), (path, body, answer.text)
        assert client.post("/train", content=b"{not json", headers={"content-type": "application/json"}
                           ).status_code == 422
    assert not app.state.training.trainer.busy and app.state.training.trainer.outcomes == []


def test_without_a_config_file_nothing_starts(offline_config: Any, litemedsam: Any) -> None:
    app = create_app(offline_config(litemedsam), model=litemedsam)  # its source file does not exist
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert answer.status_code == 200 and answer.json()["status"] == "unavailable"
    assert "cannot be started" in answer.json()["reason"]


def test_annotation_webhook_route_uses_train_every_n_annotations(offline_config: Any, litemedsam: Any,
                                                                 tmp_path: Path) -> None:
    config = offline_config(litemedsam, train={"every_n_annotations": 2, "min_reviewed": 1})
    app = create_app(config, model=litemedsam)
    command, gate = stand_in_command(tmp_path)
    gate.touch()
    app.state.training.trainer = trainer = BackgroundTrainer(tmp_path / "models", command)
    project = {"id": 3, "title": config.label_studio.project}
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [client.post("/webhook", json={"action": "ANNOTATION_CREATED", "annotation": {"id": n},
                                                  "project": {**project, "num_tasks_with_annotations": n}}).json()
                    for n in (1, 2, 3)]
        assert [answer["status"] for answer in statuses] == ["ok", "started", "ok"]
        assert trainer.wait(WAIT_S)
    assert [outcome.reason for outcome in trainer.outcomes] == ["2 tasks reviewed (ANNOTATION_CREATED)"]


def test_annotation_webhooks_start_a_training_every_n_reviewed(tmp_path: Path) -> None:
    command, gate = stand_in_command(tmp_path)
    gate.touch()
    trainer = BackgroundTrainer(tmp_path / "models", command)
    training = ServeTraining("proj", trainer, ReviewedCountTrigger(3, lambda: 0))
    answers = [training.on_annotations("ANNOTATION_CREATED", {"title": "proj", "num_tasks_with_annotations": n})
               for n in (1, 2, 3, 4)]
    assert [a["status"] for a in answers] == ["ok", "ok", "started", "ok"]
    assert trainer.wait(WAIT_S) and len(trainer.outcomes) == 1
    assert "3 tasks reviewed" in trainer.outcomes[0].reason
    assert training.on_annotations("ANNOTATION_CREATED", {"id": 1})["status"] == "ok"  # no count: not counted
    assert training.on_annotations("ANNOTATION_CREATED", {"title": "x", "num_tasks_with_annotations": 99}) == {
        "status": "ok"}  # another project
    assert training.on_annotations("ANNOTATION_UPDATED", {"title": "proj", "num_tasks_with_annotations": 6}
                                   )["status"] == "started"
    assert trainer.wait(WAIT_S) and len(trainer.outcomes) == 2
