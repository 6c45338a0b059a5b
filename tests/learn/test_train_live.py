"""The learning loop end to end against a real Label Studio, the real YOLO11n weights and LiteMedSAM (issue 23's
first acceptance test, kept small for CI).

30 images of a class no COCO detector knows (a ring with a cross, pasted on scikit-image photos); ``run`` creates
the tasks without predictions (``detector.model: trained`` has no model yet) and caches the embeddings; 20 are
reviewed through Label Studio's API (one with an object of a label not in the config, one with no object, one whose
image is then deleted); a first ``train`` is killed mid-training (nothing published); ``train`` then publishes a
model, and the 10 unreviewed tasks carry predictions of its version that find the shapes (recall and precision at
box IoU 0.5), with masks; a second ``train`` has nothing to do.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from batchlabel.annotate.trained_models import list_models, project_models_dir
from tests.ingest.ingest_helpers import BATCHLABEL, project_tasks, write_yaml_config
from tests.learn.synthetic_shapes import SHAPE_LABEL, recall_precision, synthesise, write_images

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

IMAGES, REVIEWED = 30, 20
EPOCHS = 12


def run_cli(*args: str, log_dir: Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI; its stderr also goes to ``log_dir/<command>-<n>.log`` (read there after a timeout)."""
    log = log_dir / f"{args[0]}-{len(list(log_dir.glob(args[0] + '-*')))}.log"
    with log.open("w") as stderr:
        done = subprocess.run([BATCHLABEL, *args], stdout=subprocess.PIPE, stderr=stderr, text=True,
                              timeout=timeout_s)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, log.read_text())


def _by_file(tasks: list[dict]) -> dict[str, dict]:
    from batchlabel.sync.client import rel_path_from_url

    return {str(rel_path_from_url(task["data"]["image"])): task for task in tasks}


def _box_of(item: dict[str, Any]) -> tuple[float, float, float, float]:
    value, width, height = item["value"], item["original_width"], item["original_height"]
    x1, y1 = value["x"] * width / 100, value["y"] * height / 100
    return (x1, y1, x1 + value["width"] * width / 100, y1 + value["height"] * height / 100)


def _review(ls: Any, config: Any, tasks: dict[str, dict], images: list[Any]) -> None:
    """Annotations for the first REVIEWED images: their true masks (brush + rectangle); image 1 also gets an
    object labelled 'gizmo' (not in the config)."""
    from batchlabel.annotate.preannotate import control_names
    from batchlabel.sync.results import object_results

    names, _labels = control_names(config)
    for index, image in enumerate(images[:REVIEWED]):
        result = [item for mask, box in zip(image.masks, image.boxes, strict=True)
                  for item in object_results(mask, label=SHAPE_LABEL, outputs=("brush", "rectangle"), names=names,
                                             box_xyxy=box)]
        if index == 1:
            gizmo = [dict(item) for item in result if item["type"] == "rectanglelabels"][:1]
            for item in gizmo:
                item["id"] = "gizmo_rect"
                item["value"] = {**item["value"], "rectanglelabels": ["gizmo"]}
            result += gizmo
        ls.annotations.create(id=tasks[f"{image.name}.png"]["id"], result=result)


def test_train_learns_a_new_class_from_reviewed_tasks_and_pre_annotates_the_rest(
        label_studio: Any, make_config: Any, yolo11n: Path, tmp_path: Path) -> None:
    config = make_config(
        label_studio={"labels": [SHAPE_LABEL, "spare"]},
        preannotate={"mode": "detect", "default_label": SHAPE_LABEL, "detector": {"model": "trained"},
                     "outputs": ["brush", "rectangle"]},
        train={"base": str(yolo11n), "epochs": EPOCHS, "imgsz": 320, "device": "cpu", "min_reviewed": 10},
    )
    config_path = write_yaml_config(config, tmp_path / "config.yaml")
    images = synthesise(IMAGES, seed=7, empty_every=10)  # images 9, 19, 29 have no object
    write_images(images, config.storage.root)

    first = run_cli("run", str(config_path), "--json", log_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("no model for project") == 1  # said once per run
    assert json.loads(first.stdout)["pushed"] == IMAGES
    ls = label_studio.client
    tasks = _by_file(project_tasks(ls, config.label_studio.project))
    assert len(tasks) == IMAGES and not any(task["predictions"] for task in tasks.values())
    _review(ls, config, tasks, images)
    (config.storage.root / f"{images[2].name}.png").unlink()  # reviewed, then deleted from the document root

    killed = subprocess.Popen([BATCHLABEL, "train", str(config_path)], stderr=subprocess.PIPE, text=True)
    assert killed.stderr is not None
    for line in killed.stderr:
        if re.search(r"epoch 1/\d+", line):
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert list_models(config.models_dir, config.label_studio.project) == []  # nothing half-written is listed

    trained = run_cli("train", str(config_path), "--json", log_dir=tmp_path)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    version = summary["model_version"]
    assert re.fullmatch(r"yolo11n-ft-19-[0-9a-f]{6}", version)  # 20 reviewed, one image gone
    assert summary["status"] == "trained" and summary["train_images"] + summary["val_images"] == REVIEWED - 1
    assert Path(summary["weights"]).is_file() and set(summary["metrics"]) == {"mAP50", "mAP50-95"}
    warnings = "\n".join(summary["warnings"])
    assert "'spare' has no reviewed example" in warnings and "gizmo" in warnings
    assert f"{images[2].name}.png" in warnings
    assert [p.name for p in project_models_dir(config.models_dir, config.label_studio.project).iterdir()] == [version]
    assert summary["repredict"]["requeued"] == IMAGES - REVIEWED

    after = _by_file(project_tasks(ls, config.label_studio.project))
    truth, found = [], []
    for image in images[REVIEWED:]:
        predictions = [p for p in after[f"{image.name}.png"]["predictions"] if version in p["model_version"]]
        assert len(predictions) <= 1
        items = predictions[0]["result"] if predictions else []
        rectangles = [item for item in items if item["type"] == "rectanglelabels"]
        assert len([item for item in items if item["type"] == "brushlabels"]) == len(rectangles)  # with masks
        truth.append(image.boxes)
        found.append([_box_of(item) for item in rectangles])
    recall, precision = recall_precision(truth, found, iou=0.5)
    print(f"trained {version}: recall {recall:.3f}, precision {precision:.3f} at box IoU 0.5 on "
          f"{IMAGES - REVIEWED} unreviewed images; metrics {summary['metrics']}")
    assert recall >= 0.8 and precision >= 0.8
    project = ls.projects.get(id=after[f"{images[0].name}.png"]["project"])
    assert version in project.model_version  # the project shows the new version

    again = run_cli("train", str(config_path), "--json", log_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "unchanged"
    assert json.loads(again.stdout)["repredict"]["requeued"] == 0  # once per model version
    status = run_cli("status", str(config_path), "--json", log_dir=tmp_path)
    assert [model["version"] for model in json.loads(status.stdout)["models"]] == [version]
