"""Serve's batch ``/predict`` (Label Studio's "Retrieve predictions") in mode ``detect``: yolo11n (real weights) +
LiteMedSAM (real weights) in process; labelled objects from the proposals and embeddings ``encode`` stored."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
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


def _damage_deep_json(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def _damage_short_box(path: Path) -> None:
    entry = json.loads(path.read_text())
    entry["detections"][0]["box_xyxy"] = entry["detections"][0]["box_xyxy"][:2]
    path.write_text(json.dumps(entry))


def _damage_huge_mask(path: Path) -> None:
    entry = json.loads(path.read_text())
    entry["detections"][0]["mask"] = {"size": [200_000, 200_000], "counts": "0"}
    path.write_text(json.dumps(entry))


def _damage_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.json").write_text("{}")


def _damage_box(value: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        entry = json.loads(path.read_text())
        entry["detections"][0]["box_xyxy"][2] = value
        path.write_text(json.dumps(entry))  # NaN / Infinity as Python's json writes them
    return damage


def _damage_image_size(path: Path) -> None:
    entry = json.loads(path.read_text())
    entry["image_size"] = [0, entry["image_size"][1]]
    path.write_text(json.dumps(entry))


DAMAGE = {
    "deep JSON": _damage_deep_json, "2-number box": _damage_short_box, "200000x200000 mask": _damage_huge_mask,
    "a folder": _damage_folder, "NaN box": _damage_box(float("nan")), "infinite box": _damage_box(float("inf")),
    "1e30 box": _damage_box(1e30), "non-positive image size": _damage_image_size,
}


def _batch_body(names: Sequence[str]) -> dict[str, Any]:
    return {
        "tasks": [{"id": i + 1, "data": {"image": f"/data/local-files/?d={name}"}, "annotations": [],
                   "predictions": []} for i, name in enumerate(names)],
        "project": "1.1700000000", "label_config": generate_label_config(LABELS),
        "params": {"login": None, "password": None, "context": None},
    }


def _brush_labels(prediction: Any) -> set[str]:
    return {item["value"]["brushlabels"][0] for item in prediction["result"] if item["type"] == "brushlabels"}


@pytest.fixture(scope="module")
def detect_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the damage cases: embeddings encoded and proposals detected once, then damaged per case."""
    return tmp_path_factory.mktemp("detect-cache")


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_stored_proposal_is_detected_again_and_the_batch_answers(
        damage: Callable[[Path], None], detect_cache: Path, offline_config: Any, litemedsam: Any,
        yolo11n: Path, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    import skimage.data

    from batchlabel.annotate.detect import _proposal_store, get_detector
    from batchlabel.annotate.preannotate import control_names

    config = offline_config(
        litemedsam, label_studio={"labels": LABELS}, cache={"dir": str(detect_cache)},
        preannotate={"mode": "detect", "outputs": ["brush"], "detector": {"model": str(yolo11n)}},
    )
    cat = save_image(skimage.data.chelsea(), config.storage.root / "chelsea.jpg")
    save_image(skimage.data.astronaut()[::2, ::2].copy(), config.storage.root / "astronaut.jpg")
    body = _batch_body(["chelsea.jpg", "astronaut.jpg"])
    with TestClient(create_app(config, model=litemedsam), raise_server_exceptions=False) as client:
        assert client.post("/predict", json=body).status_code == 200  # stores (or finds) both images' proposals
        store, key, _ = _proposal_store(config, get_detector(config, control_names(config)[1]))
        from batchlabel.infer.images import file_sha256

        entry = store._path(file_sha256(cat), key)
        assert entry.is_file()
        damage(entry)
        caplog.clear()
        caplog.set_level(logging.INFO)
        response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    cat_prediction, astronaut_prediction = response.json()["results"]
    assert "cat" in _brush_labels(cat_prediction)  # detected again: the image gets its prediction
    assert "person" in _brush_labels(astronaut_prediction)  # the rest of the batch answers
    warnings = [r.getMessage() for r in caplog.records if "corrupt stored proposals" in r.getMessage()]
    assert len(warnings) == 1 and str(entry) in warnings[0]
    assert "detect chelsea.jpg:" in caplog.text and "detect astronaut.jpg:" not in caplog.text
    assert store.get(file_sha256(cat), key) is not None  # stored again, valid


def test_a_stored_proposal_of_a_label_the_project_lacks_is_not_pushed(
        offline_config: Any, litemedsam: Any, yolo11n: Path, detect_cache: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    import skimage.data

    from batchlabel.annotate.detect import _proposal_store, get_detector
    from batchlabel.annotate.detectors.base import Detection
    from batchlabel.annotate.preannotate import control_names
    from batchlabel.infer.images import file_sha256

    config = offline_config(
        litemedsam, label_studio={"labels": LABELS}, cache={"dir": str(detect_cache)},  # its embeddings
        preannotate={"mode": "detect", "outputs": ["brush", "rectangle"], "detector": {"model": str(yolo11n)}},
    )
    cat = save_image(skimage.data.chelsea(), config.storage.root / "chelsea.jpg")
    store, key, _ = _proposal_store(config, get_detector(config, control_names(config)[1]))
    h, w = skimage.data.chelsea().shape[:2]
    store.put(file_sha256(cat), key, (h, w), [
        Detection("dog", (20.0, 0.0, 400.0, 299.0), 0.97, None),  # more confident, overlapping: must not win
        Detection("cat", (25.0, 5.0, 395.0, 295.0), 0.9, None),
    ], detector_id="ultralytics:yolo11n")
    caplog.set_level(logging.INFO)
    with TestClient(create_app(config, model=litemedsam), raise_server_exceptions=False) as client:
        response = client.post("/predict", json=_batch_body(["chelsea.jpg"]))
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["results"]
    labels = [label for item in prediction["result"] for key_ in ("brushlabels", "rectanglelabels")
              for label in item["value"].get(key_, ())]
    assert labels == ["cat", "cat"]
    assert "1 proposal(s) of label(s) ['dog'] the project does not have; not pushed" in caplog.text
    assert "proposal(s) in" not in caplog.text  # the stored entry was used, nothing detected
    store._path(file_sha256(cat), key).unlink()  # the damage cases sharing the cache detect chelsea themselves
