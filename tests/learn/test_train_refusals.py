"""``batchlabel train`` refuses with exit 2 and the cause: no reviewed task, fewer than ``train.min_reviewed``, a
corrupt base ``.pt`` (real Label Studio, real Ultralytics; nothing is trained, so it takes seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchlabel import cli
from batchlabel.annotate.trained_models import list_models
from tests.ingest.ingest_helpers import sample_images, write_png, write_yaml_config

pytestmark = pytest.mark.labelstudio


def test_train_refuses_without_enough_reviewed_tasks_or_with_a_corrupt_base(
        label_studio: Any, make_config: Any, yolo11n: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from batchlabel.sync import client as ls_client

    config = make_config(train={"base": str(yolo11n), "min_reviewed": 3})
    config_path = str(write_yaml_config(config, tmp_path / "config.yaml"))
    ls = label_studio.client
    project = ls_client.ensure_project(ls, config)
    shas = [write_png(config.storage.root / f"{n}.png", image) for n, image in enumerate(sample_images(3))]
    ids = ls_client.import_tasks(ls, project.id, [ls_client.make_task(f"{n}.png", sha) for n, sha in enumerate(shas)])

    assert cli.main(["train", config_path]) == 2
    assert f"refused: project {config.label_studio.project!r} has no reviewed task" in capsys.readouterr().err
    ls.annotations.create(id=ids[0], result=[])  # reviewed: no object
    assert cli.main(["train", config_path]) == 2
    assert "has 1 reviewed task(s); train.min_reviewed is 3" in capsys.readouterr().err

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint" * 100)
    broken = write_yaml_config(config.model_copy(update={"train": config.train.model_copy(
        update={"base": corrupt})}), tmp_path / "broken.yaml")
    assert cli.main(["train", str(broken)]) == 2
    assert f"refused: {corrupt}: train.base is not a loadable Ultralytics checkpoint" in capsys.readouterr().err
    assert cli.main(["train", config_path, "--epochs", "0"]) == 2
    assert list_models(config.models_dir, config.label_studio.project) == []
