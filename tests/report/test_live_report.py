"""``batchlabel report`` against a real Label Studio: six images pre-annotated in ``boxes`` mode from sidecar boxes
(LiteMedSAM, real weights), annotators simulated through the API, interactive requests counted by the real backend,
a second model version, the CLI writing JSON, PNG and HTML; the counts must be exactly the scenario's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchlabel.config import Config
from tests.ingest.ingest_helpers import sample_images, sidecar, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

SIDECARS: dict[str, list[tuple[str, list[float]]]] = {
    "0.png": [("cat", [8, 8, 48, 52])],  # submitted unchanged
    "1.png": [("cat", [30, 20, 80, 75])],  # mask shifted
    "2.png": [("cat", [5, 5, 40, 40]), ("person", [55, 50, 90, 90])],  # person deleted, a new cat drawn
    "3.png": [("person", [20, 15, 75, 80])],  # relabeled person -> cat
    "4.png": [("cat", [10, 10, 60, 60])],  # left alone
    "5.png": [("cat", [20, 30, 85, 90]), ("person", [5, 5, 30, 30])],  # left alone
}
LEAD_TIMES_S = {"0.png": 4.0, "1.png": 20.0, "2.png": 30.0, "3.png": 6.0}


def _brush_masks(prediction: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    from batchlabel.sync.results import parse_result_mask

    return [parse_result_mask(item) for item in prediction["result"] if item["type"] == "brushlabels"]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _shifted(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The mask moved right by the smallest shift that makes it an edit (0.5 <= IoU < 0.9), and that IoU."""
    for shift in range(1, mask.shape[1]):
        moved = np.zeros_like(mask)
        moved[:, shift:] = mask[:, :-shift]
        iou = _iou(mask, moved)
        if 0.5 <= iou < 0.9:
            return moved, iou
    raise AssertionError("no shift gives an edit")


def test_report_on_a_reviewed_live_project(
    label_studio: Any, make_config: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from starlette.testclient import TestClient

    from batchlabel.cli import main
    from batchlabel.commands.ingest import run_command
    from batchlabel.commands.report import build_report
    from batchlabel.formats.box import mask_to_box_xyxy
    from batchlabel.serve.app import create_app
    from batchlabel.sync.client import find_project, iter_tasks, rel_path_from_url, request_json
    from batchlabel.sync.label_config import generate_label_config
    from batchlabel.sync.results import brush_result, rectangle_result
    from tests.dataset.test_live_project import export_json
    from tests.serve.conftest import box_context

    config = make_config(model={"runtime": "torch"}, preannotate={"mode": "boxes", "outputs": ["brush", "rectangle"],
                                      "boxes_from": ["sidecar"]})
    root = config.storage.root
    for (name, boxes), image in zip(SIDECARS.items(), sample_images(len(SIDECARS)), strict=True):
        write_png(root / "img" / name, image)
        sidecar(root / "img" / name, boxes)
    assert run_command(config, argparse.Namespace(json=True, no_progress=True)) == 0
    ls = label_studio.client
    project = find_project(ls, config.label_studio.project)
    tasks = {rel_path_from_url(t["data"]["image"]).split("/")[-1]: t for t in iter_tasks(ls, project.id)}
    assert sorted(tasks) == sorted(SIDECARS)
    predictions = {name: task["predictions"][0] for name, task in tasks.items()}
    objects = {name: _brush_masks(prediction) for name, prediction in predictions.items()}
    assert {name: [label for label, _ in found] for name, found in objects.items()} == {
        name: [label for label, _ in boxes] for name, boxes in SIDECARS.items()}  # every box gave a mask
    for prediction in predictions.values():  # the prediction's score is its least certain object's
        assert prediction["score"] == pytest.approx(min(item["score"] for item in prediction["result"]), abs=1e-4)

    def item_of(mask: np.ndarray, label: str) -> dict[str, Any]:
        return brush_result(mask, label=label, from_name="brush", to_name="image")

    moved, moved_iou = _shifted(objects["1.png"][0][1])
    (cat2, _person2) = objects["2.png"]
    new_cat = np.zeros_like(cat2[1])
    new_cat[60:90, 5:35] = True  # drawn where no prediction is
    results = {
        "0.png": predictions["0.png"]["result"],
        "1.png": [item_of(moved, "cat")],
        "2.png": [item for item in predictions["2.png"]["result"] if "cat" in json.dumps(item["value"])]
                 + [rectangle_result((5.0, 60.0, 35.0, 90.0), label="cat", from_name="rect", to_name="image",
                                     image_size=new_cat.shape)],
        "3.png": [item_of(objects["3.png"][0][1], "cat")],
    }
    for name, result in results.items():
        ls.annotations.create(id=tasks[name]["id"], result=result, lead_time=LEAD_TIMES_S[name],
                              parent_prediction=predictions[name]["id"])
    # a second model version on a reviewed task: a detector's box exactly around the final cat, labelled person
    cat_box = mask_to_box_xyxy(objects["0.png"][0][1])
    assert cat_box is not None
    ls.predictions.create(task=tasks["0.png"]["id"], model_version="detector-v0", score=0.3,
                          result=[rectangle_result(cat_box, label="person", from_name="rect",
                                                   to_name="image", image_size=(96, 96), score=0.3)])
    # the annotator's smart-tool requests, answered by the real backend (which counts them in the cache)
    body = {"project": f"{project.id}.1700000000", "label_config": generate_label_config(["cat", "person"]),
            "params": {"context": None}}
    with TestClient(create_app(config)) as backend:
        for name, count in (("1.png", 3), ("2.png", 2)):
            for _ in range(count):
                request = {**body, "tasks": [{"id": tasks[name]["id"], "data": tasks[name]["data"]}],
                           "params": {"context": {"result": [box_context((20, 20, 70, 70), (96, 96))]}}}
                assert backend.post("/predict", json=request).status_code == 200

    report = build_report(config, uncertain=1, uncertain_tab=True, client=ls)
    assert report["tasks"] == {"total": 6, "reviewed": 4, "unreviewed": 2, "with_predictions": 6,
                               "predictions_ids_only": 0}
    counts = ("predicted", "reviewed", "accepted", "edited", "relabeled", "deleted", "added")
    cat, person = report["labels"]["cat"], report["labels"]["person"]
    assert {key: cat[key] for key in counts} == {"predicted": 5, "reviewed": 3, "accepted": 2, "edited": 1,
                                                 "relabeled": 0, "deleted": 0, "added": 1}
    assert {key: person[key] for key in counts} == {"predicted": 3, "reviewed": 2, "accepted": 0, "edited": 0,
                                                    "relabeled": 1, "deleted": 1, "added": 0}
    assert cat["mean_iou"] == pytest.approx((1.0 + moved_iou + 1.0) / 3, abs=1e-4)
    assert person["mean_iou"] == pytest.approx((1.0 + 0.0) / 2, abs=1e-4)
    # seconds per object of each reviewed task: 4/1, 20/1, 30/2, 6/1 -> median 10.5 (cat); no final person
    assert (cat["median_lead_time_s"], person["median_lead_time_s"]) == (10.5, None)
    assert report["time"]["median_lead_time_s_per_task"] == 13.0
    assert cat["requests_per_object"] == pytest.approx(5 / 5) and person["requests_per_object"] is None
    saved = report["time_saved_estimate"]
    assert (saved["is_estimate"], saved["objects"], saved["manual_s"], saved["measured_s"], saved["saved_s"]) == (
        True, 5, 400.0, 60.0, 340.0)
    versions = report["model_versions"]
    assert sorted(versions) == sorted(["detector-v0", predictions["0.png"]["model_version"]])
    detector = versions["detector-v0"]
    assert detector["tasks"] == {"with_predictions": 1, "reviewed": 1}
    assert {k: detector["labels"]["person"][k] for k in counts} == {  # its box is the final cat's box
        "predicted": 1, "reviewed": 1, "accepted": 0, "edited": 0, "relabeled": 1, "deleted": 0, "added": 0}
    assert detector["labels"]["person"]["mean_iou"] == pytest.approx(1.0)
    assert versions[predictions["0.png"]["model_version"]]["labels"]["cat"]["accepted"] == 2
    # every annotation started from batchlabel's prediction (parent_prediction): its time and clicks are that
    # version's, none the detector's
    ours = versions[predictions["0.png"]["model_version"]]["labels"]["cat"]
    assert (ours["median_lead_time_s"], ours["requests_per_object"], ours["final_objects"]) == (10.5, 1.0, 5)
    assert detector["labels"]["person"]["median_lead_time_s"] is None
    assert detector["labels"]["person"]["final_objects"] == 0
    least = min(("4.png", "5.png"), key=lambda name: predictions[name]["score"])
    (uncertain,) = report["uncertain"]
    assert uncertain["task_id"] == tasks[least]["id"]
    assert uncertain["url"] == f"{config.label_studio.url}/projects/{project.id}/data?task={tasks[least]['id']}"
    listed = request_json(ls, "GET", "api/tasks/", params={"project": project.id, "view": report["uncertain_tab_id"]})
    by_score = sorted(("4.png", "5.png"), key=lambda name: predictions[name]["score"])
    assert [task["id"] for task in listed["tasks"]] == [tasks[name]["id"] for name in by_score]  # unreviewed, ordered
    assert build_report(config, uncertain_tab=True, client=ls)["uncertain_tab_id"] == report["uncertain_tab_id"]

    # the CLI on a plain JSON export (predictions as ids): the reviewed counts are the same
    exported = export_json(label_studio, project.id, tmp_path / "export.json")
    config_path = write_yaml_config(config, tmp_path / "config.yaml")
    out = tmp_path / "report"
    capsys.readouterr()
    code = main(["report", str(config_path), "--from-export", str(exported), "--json", "--out", str(out),
                 "--uncertain", "2"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    for label in ("cat", "person"):
        assert {k: printed["labels"][label][k] for k in counts[1:]} == {k: report["labels"][label][k]
                                                                       for k in counts[1:]}
    assert printed["tasks"]["predictions_ids_only"] == 3 and printed["uncertain"] == []
    assert (out / "report.png").stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert "report.png" in html and "relabeled" in html and "an estimate" in html
