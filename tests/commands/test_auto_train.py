"""The watcher's automatic training against the real Label Studio: the reviewed count read from the project, a
background training (the stand-in child of ``tests/annotate/training_stand_in.py``) started when enough tasks were
reviewed, and ``batchlabel status`` showing a training in progress."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchlabel.annotate.background_training import STATUS_FILE, BackgroundTrainer
from batchlabel.annotate.trained_models import project_models_dir
from batchlabel.cli import main
from batchlabel.commands.auto_train import AutoTrainer
from batchlabel.config import Config
from batchlabel.sync.client import reviewed_task_count
from batchlabel.sync.label_config import generate_label_config
from tests.annotate.training_stand_in import stand_in_command
from tests.commands.test_auto_build import FakeClock
from tests.ingest.ingest_helpers import write_yaml_config

pytestmark = pytest.mark.labelstudio

WAIT_S = 60.0
BOX = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["cat"]}


def _review(client: Any, task_id: int) -> None:
    client.annotations.create(id=task_id, result=[{"from_name": "rectangle", "to_name": "image",
                                                   "type": "rectanglelabels", "value": BOX,
                                                   "original_width": 100, "original_height": 100}])


def test_starts_a_training_when_every_n_more_tasks_are_reviewed(
        label_studio: Any, make_config: Callable[..., Config], tmp_path: Path) -> None:
    config = make_config(train={"every_n_annotations": 2, "min_reviewed": 1})
    client = label_studio.client
    project = client.projects.create(title=config.label_studio.project,
                                     label_config=generate_label_config(list(config.label_studio.labels)))
    imported = client.projects.import_tasks(id=project.id, return_task_ids=True, request=[
        {"data": {"image": f"/data/local-files/?d=x/{index}.png"}} for index in range(5)])
    task_ids = list(imported.task_ids)
    command, gate = stand_in_command(tmp_path)
    gate.touch()
    trainer = BackgroundTrainer(tmp_path / "models", command)
    clock = FakeClock()
    auto = AutoTrainer(config, client, project.id, check_every_s=30.0, trainer=trainer, clock=clock)
    assert auto.enabled

    _review(client, task_ids[0])
    assert reviewed_task_count(client, project.id) == 1
    auto.poll()  # due at once: 1 reviewed, not enough
    auto._thread.join(WAIT_S)
    assert not trainer.busy and trainer.outcomes == []
    _review(client, task_ids[1])
    _review(client, task_ids[2])
    auto.poll()  # checked less than 30 s ago: nothing
    assert auto._thread is not None and not auto._thread.is_alive()
    clock.now = 31.0
    auto.poll()
    auto._thread.join(WAIT_S)
    assert trainer.wait(WAIT_S)
    assert [outcome.reason for outcome in trainer.outcomes] == ["3 tasks reviewed (watch)"]
    auto.close()


def test_off_by_default(make_config: Callable[..., Config], label_studio: Any) -> None:
    auto = AutoTrainer(make_config(), label_studio.client, 1, check_every_s=1.0)
    auto.poll()
    assert not auto.enabled and auto._thread is None and auto.trainer is None


def test_status_shows_a_training_in_progress(make_config: Callable[..., Config], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config()
    path = write_yaml_config(config, tmp_path / "config.yaml")
    assert main(["status", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["training_in_progress"] is None

    models = project_models_dir(config.models_dir, config.label_studio.project)
    models.mkdir(parents=True)
    status = {"pid": os.getpid(), "started": 1.0e9, "reason": "Label Studio: Start training", "log": "x.log"}
    (models / STATUS_FILE).write_text(json.dumps(status))
    assert main(["status", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["training_in_progress"] == status
    assert main(["status", str(path)]) == 0
    assert f"training in progress: pid {os.getpid()} since 2001-09-0" in capsys.readouterr().out


def test_a_training_child_of_up_attaches_to_the_running_embedded_label_studio(
        label_studio: Any, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    """``up`` hands its embedded server to the background ``train`` (child_environment); the child's
    open_label_studio connects to it instead of starting a second server on the same data folder."""
    from batchlabel.annotate.background_training import child_environment
    from batchlabel.commands.ingest import open_label_studio

    config = make_config(label_studio={"url": None, "api_key": None})
    assert config.embedded_label_studio
    env = child_environment((label_studio.url, label_studio.api_key))
    for name in ("BATCHLABEL_RUNNING_LABEL_STUDIO_URL", "BATCHLABEL_RUNNING_LABEL_STUDIO_API_KEY"):
        monkeypatch.setenv(name, env[name])
    with open_label_studio(config) as ls:
        assert ls.projects.list(page_size=1) is not None
    assert not config.label_studio_data_dir.exists()  # no embedded server was started
