"""The learning curve: per model version, the reviewed tasks it was trained on (from ``batchlabel train``'s model
manifests) next to its acceptance, in the JSON, the text, the HTML and the chart."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchlabel.cli import main
from batchlabel.report.learning import trained_model_counts, trained_on

TRAINED = "yolo11n-ft-20-3fa9c2"
#: batchlabel's prediction model_version names the detector (annotate.detect.model_version_part) among the model,
#: mode and outputs; a trained model's detector_id carries its version.
DETECT = "classes@1a2b3c4d conf>=0.25 overlap<=0.7 max=100 brush+rectangle"
TRAINED_VERSION = f"batchlabel litemedsam@79d8c9dc detect det=ultralytics:{TRAINED}@5e6f7a8b {DETECT}"
COCO_VERSION = f"batchlabel litemedsam@79d8c9dc detect det=ultralytics:yolo11n@0ebbc80d {DETECT}"


def _publish(models_dir: Path, project: str, version: str, reviewed_tasks: int) -> None:
    """A model as ``batchlabel train`` publishes it (weights.pt + manifest.json, renamed into place)."""
    from batchlabel.annotate.trained_models import partial_dir, publish_model

    partial = partial_dir(models_dir, project, version)
    weights = partial / "weights.pt"
    weights.write_bytes(b"not read by the report")
    publish_model(partial, weights, {"version": version, "reviewed_tasks": reviewed_tasks,
                                     "created": "2026-12-04T12:00:00+00:00"})


def test_trained_model_counts_reads_the_projects_models(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = tmp_path / "models"
    assert trained_model_counts(models, "cats") == {}  # no models folder
    _publish(models, "cats", TRAINED, 20)
    _publish(models, "cats", "yolo11n-ft-12-aaaaaa", 12)
    _publish(models, "dogs", "yolo11n-ft-30-bbbbbb", 30)  # another project's
    broken = models / "cats" / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert trained_model_counts(models, "cats") == {TRAINED: 20, "yolo11n-ft-12-aaaaaa": 12}
    assert "broken: not a complete trained model" in caplog.text


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (TRAINED, 20),
        (TRAINED_VERSION, 20),
        (COCO_VERSION, None),
        ("yolo11n-ft-20-3fa9c2x", None),  # a longer name is another model
        ("batchlabel yolo11n-ft-2-abcdef brush", 2),
        ("", None),
    ],
)
def test_trained_on_matches_whole_names(version: str, expected: int | None) -> None:
    assert trained_on(version, {TRAINED: 20, "yolo11n-ft-2-abcdef": 2}) == expected


def _rect(box: tuple[float, float, float, float], label: str) -> dict[str, Any]:
    from batchlabel.sync.results import rectangle_result

    return rectangle_result(box, label=label, from_name="rect", to_name="image", image_size=(100, 100), score=0.9)


def _task(task_id: int, final: list[dict[str, Any]] | None, predictions: list[tuple[str, list[dict]]]) -> dict:
    return {
        "id": task_id, "data": {"image": f"/data/local-files/?d=img/{task_id}.png"},
        "annotations": [] if final is None else [{"id": 100 + task_id, "result": final, "lead_time": 5.0}],
        "predictions": [{"id": 10 * task_id + index, "model_version": version, "result": result, "score": 0.9,
                         "created_at": f"2026-12-0{index + 1}T00:00:00Z"}
                        for index, (version, result) in enumerate(predictions)],
    }


def _config(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp_path / "root")},
        "label_studio": {"url": "http://127.0.0.1:9", "labels": ["cat", "person"], "project": "cats"},
        "cache": {"dir": str(tmp_path / "cache")},
    }))
    _publish(tmp_path / "cache" / "models", "cats", TRAINED, 20)
    from PIL import Image

    (tmp_path / "root" / "img").mkdir()
    for task_id in (1, 2, 3):
        Image.new("RGB", (100, 100)).save(tmp_path / "root" / "img" / f"{task_id}.png")
    return path


def test_report_shows_the_reviewed_tasks_each_version_was_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    cat, person, far = _rect((10, 10, 50, 50), "cat"), _rect((60, 60, 90, 90), "person"), _rect((0, 70, 20, 99), "cat")
    export = tmp_path / "export.json"
    export.write_text(json.dumps([
        # the COCO model found one of two objects and a wrong one; the trained model both
        _task(1, [cat, person], [(COCO_VERSION, [cat, far]), (TRAINED_VERSION, [cat, person])]),
        _task(2, [cat], [(COCO_VERSION, [far]), (TRAINED_VERSION, [cat])]),
        _task(3, None, [(TRAINED_VERSION, [cat])]),
    ]))
    out = tmp_path / "out"
    assert main(["report", str(config), "--from-export", str(export), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    versions = report["model_versions"]
    assert versions[COCO_VERSION]["trained_on_reviewed_tasks"] is None
    assert versions[TRAINED_VERSION]["trained_on_reviewed_tasks"] == 20
    assert report["learning_curve"] == [
        {"model_version": COCO_VERSION, "trained_on_reviewed_tasks": None, "reviewed_objects": 3, "accepted": 1,
         "acceptance": 0.3333},
        {"model_version": TRAINED_VERSION, "trained_on_reviewed_tasks": 20, "reviewed_objects": 3, "accepted": 3,
         "acceptance": 1.0},
    ]
    html = (out / "report.html").read_text()
    assert "trained on 20 reviewed tasks" in html and "Learning curve" in html
    from PIL import Image

    with Image.open(out / "report.png") as chart:
        assert chart.width > 1500  # the third panel: 17 inches at 110 dpi

    single = tmp_path / "single.json"  # one version: no per-version table, the learning curve still printed
    single.write_text(json.dumps([_task(2, [cat], [(TRAINED_VERSION, [cat])])]))
    assert main(["report", str(config), "--from-export", str(single)]) == 0
    text = capsys.readouterr().out
    assert "learning curve (acceptance per model version):" in text
    assert f"{'20':>12}{1:>10}{1:>10}{'1.000':>12}  {TRAINED_VERSION}" in text
