"""Label Studio's own "Start training" against the real stack: the real Label Studio's ``POST /api/ml/{id}/train``
reaches ``batchlabel serve``, is answered while the real ``batchlabel train`` (a separate process: YOLO11n
fine-tuned on 4 reviewed synthetic images, 1 epoch at imgsz 64) still runs, a click through Label Studio is
answered meanwhile, and the model appears in the project's models folder."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from batchlabel.annotate.background_training import training_in_progress
from batchlabel.annotate.trained_models import newest_model, project_models_dir
from batchlabel.cli import main
from batchlabel.config import load_config
from tests.ingest.ingest_helpers import project_tasks, write_yaml_config
from tests.serve.conftest import box_context, brush_masks
from tests.serve.test_labelstudio import connect, interactive, ls_post

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]

LABEL = "ringcross"
TRAIN_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def yolo11n() -> Path:
    """The real YOLO11n COCO weights, as ``tests/annotate/conftest.py`` fetches them."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    from batchlabel.annotate.detectors.assets import YOLO11N
    from tests.annotate.conftest import _fetch

    return _fetch(YOLO11N)


def _rectangle(box: tuple[float, float, float, float], size_hw: tuple[int, int]) -> dict[str, Any]:
    """A reviewed rectangle: ``box`` XYXY pixels -> Label Studio's percent of the image."""
    (x1, y1, x2, y2), (height, width) = box, size_hw
    return {"from_name": "rectangle", "to_name": "image", "type": "rectanglelabels", "original_width": width,
            "original_height": height, "image_rotation": 0,
            "value": {"x": 100 * x1 / width, "y": 100 * y1 / height, "width": 100 * (x2 - x1) / width,
                      "height": 100 * (y2 - y1) / height, "rotation": 0, "rectanglelabels": [LABEL]}}


def test_start_training_from_label_studio_trains_in_the_background_while_clicks_answer(
        label_studio: Any, make_config: Any, litemedsam: Any, start_backend: Any, yolo11n: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.learn.synthetic_shapes import synthesise, write_images

    caplog.set_level(logging.INFO, logger="batchlabel.annotate.background_training")
    made = make_config(label_studio={"labels": [LABEL]}, preannotate={"mode": "none", "default_label": LABEL},
                       train={"base": str(yolo11n), "epochs": 1, "imgsz": 64, "batch": 4, "device": "cpu",
                              "min_reviewed": 4})
    images = synthesise(6, seed=5, size_hw=(120, 160))
    write_images(images, made.storage.root / "shapes")
    config = load_config(write_yaml_config(made, tmp_path / "config.yaml"))  # serve starts `train` on this file
    assert main(["run", str(config.source), "--no-progress"]) == 0  # the tasks, journaled, embeddings stored

    by_name = {image.name: image for image in images}
    tasks = {Path(task["data"]["image"]).stem: task for task in project_tasks(label_studio.client,
                                                                              config.label_studio.project)}
    assert sorted(tasks) == sorted(by_name)
    reviewed, unreviewed = sorted(tasks)[:4], sorted(tasks)[4:]
    for name in reviewed:
        label_studio.client.annotations.create(id=tasks[name]["id"], result=[
            _rectangle(box, (120, 160)) for box in by_name[name].boxes])

    server = start_backend(config, model=litemedsam)
    backend = connect(label_studio, tasks[reviewed[0]]["project"], server.url)
    assert backend.state == "CO", backend.state
    trainer = server.app.state.training.trainer

    answer = ls_post(label_studio, f"/api/ml/{backend.id}/train", {})  # the Model settings' "Start training"
    assert answer.status_code == 200, answer.text
    assert trainer.busy  # answered while the training runs: Label Studio did not wait for it
    models_dir = project_models_dir(config.models_dir, config.label_studio.project)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while training_in_progress(models_dir) is None and trainer.busy:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert training_in_progress(models_dir) is not None, "the training ended before a click could be tried"

    target = by_name[unreviewed[0]]  # a click during the training, through Label Studio
    clicked = interactive(label_studio, backend.id, tasks[unreviewed[0]]["id"],
                          [box_context(target.boxes[0], (120, 160), label=LABEL)])
    (mask,) = brush_masks(clicked["result"])
    assert mask.shape == (120, 160) and mask.any()

    assert trainer.wait(TRAIN_TIMEOUT_S), "the background training did not end"
    (outcome,) = trainer.outcomes
    assert outcome.exit_code == 0, (models_dir / "training.log").read_text()[-3000:]
    model = newest_model(config.models_dir, config.label_studio.project)
    assert model is not None and model.version == outcome.model_version and model.weights.is_file()
    assert model.reviewed_tasks == 4
    assert outcome.report is not None and outcome.report["status"] == "trained"
    assert training_in_progress(models_dir) is None
    assert f"model_version {model.version}" in caplog.text and "training started" in caplog.text
