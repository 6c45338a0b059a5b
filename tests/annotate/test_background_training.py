"""The background training launcher with a real child process: a stand-in for ``batchlabel train --json`` (a tiny
Python script gated by a file, so nothing here depends on timing) started the way the real one is."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from batchlabel.annotate.background_training import (
    COALESCED,
    LOG_FILE,
    QUEUED,
    STARTED,
    STATUS_FILE,
    BackgroundTrainer,
    last_json_object,
    training_command,
    training_in_progress,
)
from batchlabel.annotate.training_trigger import ReviewedCountTrigger
from tests.annotate.training_stand_in import stand_in_command

WAIT_S = 60.0


def _trainer(tmp_path: Path, **kwargs) -> tuple[BackgroundTrainer, Path]:
    command, gate = stand_in_command(tmp_path)
    return BackgroundTrainer(tmp_path / "models" / "project", command, **kwargs), gate


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_one_at_a_time_one_follow_up_low_priority_single_thread(tmp_path: Path) -> None:
    trainer, gate = _trainer(tmp_path)
    assert trainer.request("start training") == STARTED
    _wait_for(lambda: training_in_progress(trainer.models_dir) is not None, "the status file")
    running = training_in_progress(trainer.models_dir)
    assert running is not None and running.reason == "start training"
    assert trainer.request("10 more reviewed") == QUEUED
    assert trainer.request("20 more reviewed") == COALESCED
    gate.touch()
    assert trainer.wait(WAIT_S)

    first, second = trainer.outcomes
    assert [o.exit_code for o in trainer.outcomes] == [0, 0]
    assert (first.model_version, second.model_version) == ("stand-in-0", "stand-in-1")
    assert (first.reason, second.reason) == ("start training", "10 more reviewed")
    assert first.report is not None and first.report["pid"] == running.pid
    assert first.report["ended"] <= second.report["started"] + 1e-3  # the follow-up began after the first ended
    assert first.report["nice"] >= os.nice(0) + 10
    assert first.report["omp"] == "1"
    assert training_in_progress(trainer.models_dir) is None
    assert not (trainer.models_dir / STATUS_FILE).exists()
    log_text = (trainer.models_dir / LOG_FILE).read_text()
    assert log_text.count("epoch 1/1 100%\n") == 2 and "stand-in-1" in log_text and "10 more reviewed" in log_text


def test_a_second_process_waits_for_the_first(tmp_path: Path) -> None:
    """Two launchers of one project (serve and watch): the lock file keeps their trainings apart."""
    first, gate = _trainer(tmp_path)
    second = BackgroundTrainer(first.models_dir, first.command)
    assert first.request("serve") == STARTED
    _wait_for(lambda: training_in_progress(first.models_dir) is not None, "the first training")
    assert second.request("watch") == STARTED  # its worker waits for the lock
    gate.touch()
    assert first.wait(WAIT_S) and second.wait(WAIT_S)
    (a,), (b,) = first.outcomes, second.outcomes
    assert a.report["ended"] <= b.report["started"] + 1e-3 or b.report["ended"] <= a.report["started"] + 1e-3


def test_failure_exit_code_and_close_stops_a_running_child(tmp_path: Path) -> None:
    trainer, gate = _trainer(tmp_path, env={**os.environ, "STAND_IN_EXIT": "2"})
    gate.touch()
    trainer.request("refused one")
    assert trainer.wait(WAIT_S)
    assert trainer.outcomes[0].exit_code == 2 and trainer.outcomes[0].model_version == "stand-in-0"

    gate.unlink()
    trainer.request("stopped one")
    _wait_for(lambda: training_in_progress(trainer.models_dir) is not None, "the second training")
    trainer.request("dropped follow-up")
    trainer.close(grace_s=5.0)
    assert not trainer.busy
    stopped = trainer.outcomes[-1]
    assert stopped.reason == "stopped one" and stopped.exit_code < 0 and stopped.model_version is None
    assert len(trainer.outcomes) == 2  # the queued follow-up was dropped
    assert not (trainer.models_dir / STATUS_FILE).exists()
    assert trainer.request("after close") == COALESCED and not trainer.busy


def test_a_stale_status_file_is_not_a_training(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    assert training_in_progress(models) is None
    (models / STATUS_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "started": 1.0, "reason": "x", "log": ""}))
    assert training_in_progress(models) is None
    (models / STATUS_FILE).write_text("{not json")
    assert training_in_progress(models) is None
    (models / STATUS_FILE).write_text(json.dumps({"pid": os.getpid(), "started": 1.0, "reason": "x", "log": "l"}))
    assert training_in_progress(models).pid == os.getpid()


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('progress\n{"a": 1}\n', {"a": 1}),
    ('{"old": 1}\nnoise\n{\n  "a": {"b": 2}\n}\n', {"a": {"b": 2}}),
    ("no json at all", None),
    ("[1, 2]", None),
])
def test_last_json_object(text: str, expected: dict | None) -> None:
    assert last_json_object(text) == expected


def test_training_command_runs_the_cli_with_json(tmp_path: Path) -> None:
    argv = training_command(tmp_path / "c.yaml", "--epochs", "1")
    assert argv == [sys.executable, "-m", "batchlabel", "train", str(tmp_path / "c.yaml"), "--json", "--epochs", "1"]


def test_reviewed_count_trigger() -> None:
    trained_on = [0]
    trigger = ReviewedCountTrigger(5, lambda: trained_on[0], minimum=3)
    assert [trigger.due(n) for n in (1, 4, 5, 6, 9)] == [False, False, True, False, False]
    assert trigger.due(10)  # 5 more than when the last one was started
    trained_on[0] = 14  # a model trained meanwhile on 14 reviewed tasks
    assert not trigger.due(15) and trigger.due(19)
    assert not ReviewedCountTrigger(0, lambda: 0).due(1000)
    with pytest.raises(ValueError, match="every_n"):
        ReviewedCountTrigger(-1, lambda: 0)
