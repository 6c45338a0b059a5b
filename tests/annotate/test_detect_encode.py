"""``batchlabel encode`` in mode ``detect``: proposals computed where the encode runs, stored, reused by ``run``;
the detector's total ETA in the progress output."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from batchlabel.annotate.detect_eta import DetectionEta, format_duration
from batchlabel.config import parse_config
from tests.annotate.test_detect import _by_image, _objects
from tests.ingest.ingest_helpers import project_tasks, run_cli, write_png, write_yaml_config


def test_eta_is_the_first_image_seconds_times_the_images_left(caplog: pytest.LogCaptureFixture) -> None:
    eta = DetectionEta("sam3:sam3@abc", total=19)
    assert eta.update(0, []) is None  # nothing measured yet: no guess
    with caplog.at_level(logging.INFO, logger="batchlabel.annotate.detect_eta"):
        first = eta.update(1, [40.0])
        later = eta.update(5, [40.0, 10.0, 10.0])
    assert first == "detect ETA ~12 min (40.0 s/image on the first image x 18 image(s) left)"
    assert later == "detect ETA ~9 min (40.0 s/image on the first image x 14 image(s) left)"
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # logged once, as a warning for a slow detector
    assert "sam3:sam3@abc: detect ETA ~12 min" in caplog.text
    assert (format_duration(42), format_duration(600), format_duration(4 * 3600)) == ("42 s", "10 min", "4.0 h")


@pytest.mark.slow
def test_encode_with_tiny_sam3_stores_proposals_and_shows_the_eta(
        tmp_path: Path, tiny_sam3: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    import skimage.data

    from batchlabel.commands.encode import encode_command

    root = tmp_path / "root"
    for name in ("chelsea", "coffee"):
        write_png(root / f"{name}.png", getattr(skimage.data, name)()[::4, ::4])
    config = parse_config({
        "storage": {"root": str(root)},
        "label_studio": {"url": None, "api_key": None, "labels": ["cat", "cup"]},
        "model": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu"},
        "preannotate": {"mode": "detect", "detector": {"model": str(tiny_sam3), "min_score": 0.0, "max_objects": 2}},
        "cache": {"dir": str(tmp_path / "cache"), "max_gb": 1},
    }, source=str(tmp_path / "c.yaml"), base_dir=tmp_path)
    caplog.set_level(logging.INFO)
    assert encode_command(config, argparse.Namespace(json=True)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["proposals"]["detector"].startswith("sam3:")
    assert (summary["proposals"]["detected"], summary["proposals"]["stored"]) == (2, 0)
    assert "detect ETA ~" in caplog.text and "x 1 image(s) left" in caplog.text
    assert len(list((config.cache.dir / "proposals").rglob("*.json"))) == 2

    caplog.clear()
    assert encode_command(config, argparse.Namespace(json=True)) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["cached"], again["proposals"]["detected"], again["proposals"]["stored"]) == (2, 0, 2)
    assert "proposal(s) in" not in caplog.text


@pytest.mark.labelstudio
@pytest.mark.slow
def test_encode_stores_yolo11n_proposals_that_run_reuses(label_studio, make_config, tmp_path, yolo11n) -> None:
    import skimage.data

    config = make_config(
        label_studio={"labels": ["cat", "person", "cup"]},
        preannotate={"mode": "detect", "outputs": ["brush", "rectangle"], "detector": {"model": str(yolo11n)}},
    )
    root = config.storage.root
    write_png(root / "chelsea.png", skimage.data.chelsea())
    write_png(root / "astronaut.png", skimage.data.astronaut()[::2, ::2])
    (root / "notes.png").write_text("not an image")  # the batch goes on past it
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    encoded = run_cli("encode", str(cfg), "--json")
    assert encoded.returncode == 1, encoded.stderr
    summary = json.loads(encoded.stdout)
    assert summary["proposals"]["detector"] == "ultralytics:yolo11n@0ebbc80d"
    assert (summary["encoded"], summary["proposals"]["detected"], summary["proposals"]["failed"]) == (2, 2, 0)
    assert [(f["path"], f["stage"]) for f in summary["failures"]] == [("notes.png", "encode")]
    assert "detect ETA ~" in encoded.stderr
    stored = sorted((config.cache.dir / "proposals").rglob("*.json"))
    assert len(stored) == 2
    mtimes = [p.stat().st_mtime_ns for p in stored]

    ran = run_cli("run", str(cfg), "--json")
    assert ran.returncode == 1, ran.stderr  # notes.png still fails; the others are pushed
    assert [f["path"] for f in json.loads(ran.stdout)["failures"]] == ["notes.png"]
    assert "proposal(s) in" not in ran.stderr  # run read encode's proposals; the detector never ran
    assert [p.stat().st_mtime_ns for p in stored] == mtimes
    tasks = _by_image(project_tasks(label_studio.client, config.label_studio.project))
    assert "cat" in {obj[0] for obj in _objects(tasks["chelsea.png"])}
    person = [obj for obj in _objects(tasks["astronaut.png"]) if obj[0] == "person"]
    assert person and all(isinstance(mask, np.ndarray) and mask.any() for _, mask, _, _ in person)
