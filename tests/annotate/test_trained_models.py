"""The trained-model store: published atomically, listed newest last, partial folders never listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchlabel.annotate.trained_models import (
    list_models,
    newest_model,
    partial_dir,
    project_models_dir,
    project_slug,
    publish_model,
    version_name,
)


def _publish(models: Path, version: str, created: str, weights: Path) -> None:
    partial = partial_dir(models, "My Project", version)
    publish_model(partial, weights, {"version": version, "created": created, "classes": ["a", "b"],
                                     "classes_without_examples": ["b"], "reviewed_tasks": 12,
                                     "metrics": {"mAP50": 0.9, "mAP50-95": 0.6}})


def test_models_are_listed_oldest_first_and_partial_folders_never(tmp_path: Path) -> None:
    models = tmp_path / "models"
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    assert newest_model(models, "My Project") is None
    _publish(models, "yolo11n-ft-12-aaaaaa", "2026-12-04T10:00:00+00:00", weights)
    _publish(models, "yolo11n-ft-20-bbbbbb", "2026-12-04T11:00:00+00:00", weights)
    partial_dir(models, "My Project", "yolo11n-ft-30-cccccc")  # a training still running (or killed)
    listed = list_models(models, "My Project")
    assert [m.version for m in listed] == ["yolo11n-ft-12-aaaaaa", "yolo11n-ft-20-bbbbbb"]
    newest = newest_model(models, "My Project")
    assert newest is not None and newest.version == "yolo11n-ft-20-bbbbbb"
    assert newest.weights.read_bytes() == b"weights" and newest.path.parent == models / "my-project"
    assert newest.trained_classes == ("a",)
    assert newest.summary() == {"version": "yolo11n-ft-20-bbbbbb", "created": "2026-12-04T11:00:00+00:00",
                                "reviewed_tasks": 12, "metrics": {"mAP50": 0.9, "mAP50-95": 0.6},
                                "weights": str(newest.weights)}
    with pytest.raises(FileExistsError):
        _publish(models, "yolo11n-ft-20-bbbbbb", "2026-12-04T12:00:00+00:00", weights)


def test_a_dead_trainings_partial_folder_is_removed_by_the_next_publish(tmp_path: Path) -> None:
    models = tmp_path / "models"
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"w")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = project_models_dir(models, "p") / f".partial-yolo11n-ft-9-dddddd-{int(dead.stdout)}"
    leftover.mkdir(parents=True)
    (leftover / "weights.pt").write_bytes(b"half")
    (project_models_dir(models, "p") / "broken").mkdir()  # no manifest: warned about, not listed
    assert list_models(models, "p") == []
    publish_model(partial_dir(models, "p", "v1"), weights, {"version": "v1", "created": "2026-12-04T10:00:00"})
    assert not leftover.exists()
    assert [m.version for m in list_models(models, "p")] == ["v1"]
    assert json.loads((project_models_dir(models, "p") / "v1" / "manifest.json").read_text())["version"] == "v1"


def test_version_names_say_base_reviewed_count_and_data_digest() -> None:
    assert version_name(Path("/w/yolo11n.pt"), 20, "3fa9c2d1e0") == "yolo11n-ft-20-3fa9c2"
    assert project_slug("Cats & Dogs / 2026") == "cats-dogs-2026"
    assert project_slug("***") == "project"


def test_a_newer_trained_model_replaces_the_older_one_in_the_process(tmp_path: Path, yolo11n: Path) -> None:
    """A daemon adopts model after model: the detector of the older version is dropped, not kept loaded for ever."""
    from batchlabel.annotate import detect
    from batchlabel.config import parse_config

    config = parse_config({"storage": {"root": str(tmp_path / "root")},
                           "label_studio": {"labels": ["cat"], "project": "Adopting"},
                           "cache": {"dir": str(tmp_path / "cache")},
                           "preannotate": {"mode": "detect", "detector": {"model": "trained", "device": "cpu"}}},
                          source="test", base_dir=tmp_path)

    def publish(version: str, created: str) -> None:
        publish_model(partial_dir(config.models_dir, "Adopting", version), yolo11n,
                      {"version": version, "created": created, "classes": ["cat"]})

    publish("yolo11n-ft-10-aaaaaa", "2026-12-04T10:00:00+00:00")
    first = detect.get_detector(config, ["cat"])
    assert detect.get_detector(config, ["cat"]) is first  # loaded once
    publish("yolo11n-ft-20-bbbbbb", "2026-12-04T11:00:00+00:00")
    second = detect.get_detector(config, ["cat"])
    assert second is not first
    assert first not in detect._DETECTORS.values() and second in detect._DETECTORS.values()
