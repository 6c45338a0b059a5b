"""Serve's batch ``/predict`` (Label Studio's "Retrieve predictions") in mode ``detect``: yolo11n (real weights) +
LiteMedSAM (real weights) in process; labelled objects from the proposals and embeddings ``encode`` stored."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from batchlabel.serve.app import create_app
from batchlabel.sync.label_config import generate_label_config
from tests.annotate.conftest import yolo11n  # noqa: F401  (the real-weights fixture)
from tests.serve.conftest import brush_masks, save_image

pytestmark = pytest.mark.slow

LABELS = ["cat", "person", "cup"]


def test_batch_predict_labels_objects_from_stored_proposals(
        offline_config: Any, litemedsam: Any, yolo11n: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    import skimage.data

    from batchlabel.commands.encode import encode_command

    config = offline_config(
        litemedsam, label_studio={"labels": LABELS}, cache={"dir": str(tmp_path / "cache")},
        preannotate={"mode": "detect", "outputs": ["brush", "rectangle"], "detector": {"model": str(yolo11n)}},
    )
    root = config.storage.root
    save_image(skimage.data.chelsea(), root / "chelsea.jpg")
    save_image(skimage.data.astronaut()[::2, ::2].copy(), root / "astronaut.jpg")
    save_image(np.full((96, 128, 3), 127, np.uint8), root / "blank.jpg")  # nothing to find
    assert encode_command(config, argparse.Namespace(json=True)) == 0
    assert json.loads(capsys.readouterr().out)["proposals"]["detected"] == 3
    stored = sorted((config.cache.dir / "proposals").rglob("*.json"))
    mtimes = [p.stat().st_mtime_ns for p in stored]

    caplog.clear()
    caplog.set_level(logging.INFO)
    body = {
        "tasks": [{"id": i + 1, "data": {"image": f"/data/local-files/?d={name}"}, "annotations": [],
                   "predictions": []} for i, name in enumerate(("chelsea.jpg", "astronaut.jpg", "blank.jpg"))],
        "project": "1.1700000000", "label_config": generate_label_config(LABELS),
        "params": {"login": None, "password": None, "context": None},
    }
    with TestClient(create_app(config, model=litemedsam), raise_server_exceptions=False) as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    cat, astronaut, blank = response.json()["results"]
    assert blank == []  # no empty prediction
    for prediction, label in ((cat, "cat"), (astronaut, "person")):
        assert "det=ultralytics:yolo11n@0ebbc80d" in prediction["model_version"]
        labels = {item["value"]["brushlabels"][0] for item in prediction["result"] if item["type"] == "brushlabels"}
        assert label in labels
        assert all(mask.any() for mask in brush_masks(prediction["result"]))
        assert 0 < prediction["score"] <= 1
    assert "proposal(s) in" not in caplog.text  # the stored proposals were read, the detector never ran
    assert "encoded=0" in caplog.text  # and the stored embeddings
    assert [p.stat().st_mtime_ns for p in stored] == mtimes
