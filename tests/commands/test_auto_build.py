"""The watcher's automatic dataset build: nothing before the project is complete, a version once it is."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchlabel.commands.auto_build import AutoBuilder
from batchlabel.config import Config
from tests.dataset import helpers
from tests.dataset.test_live_project import LABELS, half_annotated_project

pytestmark = pytest.mark.labelstudio


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_builds_in_the_background_once_every_task_is_annotated(
    label_studio: Any, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(storage={"root": str(label_studio.document_root)}, label_studio={"labels": LABELS},
                         dataset={"out": str(tmp_path / "datasets"), "val_fraction": 0.0,
                                  "auto_build": {"when": "all", "check_every_s": 30}})
    task_ids, mask = half_annotated_project(label_studio, config, f"autobuild-{uuid.uuid4().hex[:8]}")

    clock = FakeClock()
    builder = AutoBuilder(config, label_studio.client, clock=clock)
    builder.poll()  # not due yet: no check at all
    builder.join()
    assert builder.built == []
    clock.now = 31.0
    builder.poll()  # due, but one task is still unannotated
    builder.join(60)
    assert builder.built == []

    label_studio.client.annotations.create(id=task_ids[1], result=[helpers.brush(mask, "person")])
    builder.poll()  # checked 31 s ago: not due again until 61 s
    builder.join(60)
    assert builder.built == []
    clock.now = 62.0
    builder.poll()
    builder.join(120)
    assert len(builder.built) == 1
    version = builder.built[0]
    assert (version / "annotations" / "all.json").is_file()
    assert (tmp_path / "datasets" / "latest").resolve() == version.resolve()


def test_never_is_the_default_and_does_nothing(make_config: Callable[..., Config]) -> None:
    config = make_config()
    builder = AutoBuilder(config, client=None, clock=lambda: 1e9)
    builder.poll()
    assert builder.enabled is False and builder._thread is None
