"""build_dataset from a JSON export file: COCO round trip against ground truth, split, manifest, rebuild rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from batchlabel.dataset.builder import BuildOptions, build_dataset
from batchlabel.dataset.ls_export import DatasetError, ExportFormatError
from tests.dataset import helpers

LABELS = ["cat", "person", "bottle"]


def coco_eval_ap(gt_path: Path) -> float:
    """segm AP of the ground-truth file evaluated against itself (every object as a detection, score 1)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                       "score": 1.0} for a in gt.dataset["annotations"]]
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, dict]:
    root = tmp_path / "root"
    tasks, truth = helpers.ground_truth_project(root, LABELS)
    export = helpers.write_export(tmp_path / "export.json", tasks)
    return root, export, truth


def test_round_trip_is_pixel_identical_and_scores_ap_1(tmp_path: Path, project: tuple[Path, Path, dict]) -> None:
    from pycocotools.coco import COCO

    root, export, truth = project
    out = tmp_path / "dataset"
    config = helpers.offline_config(root, out, LABELS)
    report = build_dataset(config, BuildOptions(out=out, from_export=export, val_fraction=0.3, seed=1))

    assert report.status == "built" and not report.failures
    assert report.counts["images"] == len(truth)
    coco = COCO(str(out / "annotations" / "all.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == LABELS
    assert coco.getCatIds() == [1, 2, 3]
    for image in coco.dataset["images"]:
        expected = truth[image["file_name"]]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert len(annotations) == len(expected), image["file_name"]
        assert (image["height"], image["width"]) == expected[0][0].shape
        for ann, (mask, category) in zip(annotations, expected, strict=True):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["category_id"] == category
            assert ann["iscrowd"] == 0
            assert ann["area"] == mask.sum()
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert isinstance(ann["segmentation"], dict)
    assert coco_eval_ap(out / "annotations" / "all.json") == pytest.approx(1.0)

    train = json.loads((out / "annotations" / "train.json").read_text())
    val = json.loads((out / "annotations" / "val.json").read_text())
    train_ids = {i["id"] for i in train["images"]}
    val_ids = {i["id"] for i in val["images"]}
    assert train_ids and val_ids and not train_ids & val_ids
    assert train_ids | val_ids == {i["id"] for i in coco.dataset["images"]}
    all_ann_ids = {a["id"] for a in coco.dataset["annotations"]}
    assert {a["id"] for a in train["annotations"]} | {a["id"] for a in val["annotations"]} == all_ann_ids
    for image in coco.dataset["images"]:  # hard links into images/
        linked = out / "images" / image["file_name"]
        assert linked.stat().st_ino == (root / image["file_name"]).stat().st_ino

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "export"
    assert manifest["counts"]["objects"] == len(all_ann_ids)
    first = manifest["images"][0]
    assert len(first["sha256"]) == 64 and first["annotation"]["id"] == 101
    assert first["annotation"]["updated_at"] == "2026-11-25T10:00:00.000000Z"
    assert sorted(a for i in manifest["images"] for a in i["annotation_ids"]) == sorted(all_ann_ids)
    assert (out / "mask-rcnn_r50_fpn.py").is_file()


def test_same_annotations_in_another_order_give_identical_files(tmp_path: Path,
                                                                 project: tuple[Path, Path, dict]) -> None:
    root, export, _ = project
    tasks = json.loads(export.read_text())
    shuffled = helpers.write_export(tmp_path / "shuffled.json", list(reversed(tasks)))
    outs = []
    for name, source in (("a", export), ("b", shuffled)):
        out = tmp_path / name
        build_dataset(helpers.offline_config(root, out, LABELS), BuildOptions(out=out, from_export=source))
        outs.append(out)
    for split in ("all", "train", "val"):
        assert (outs[0] / "annotations" / f"{split}.json").read_bytes() == \
            (outs[1] / "annotations" / f"{split}.json").read_bytes()


def test_partially_annotated_project_builds_and_counts_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rgb = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[5:20, 10:30] = True
    tasks = []
    for index in range(6):
        helpers.write_image(root, f"img{index}.png", rgb)
        annotations = [helpers.annotation([helpers.brush(mask, "cat")], 10 + index)] if index < 3 else []
        tasks.append(helpers.task(index + 1, f"img{index}.png", annotations))
    tasks[3]["annotations"] = [{**helpers.annotation([helpers.brush(mask, "cat")], 20), "was_cancelled": True}]
    tasks[4]["annotations"] = [helpers.annotation([], 21)]  # annotated: nothing here
    export = helpers.write_export(tmp_path / "export.json", tasks)
    out = tmp_path / "dataset"
    config = helpers.offline_config(root, out, LABELS)

    report = build_dataset(config, BuildOptions(out=out, from_export=export, val_fraction=0.34))
    assert report.counts["images"] == 3
    assert report.counts["tasks_unannotated"] == 2  # none, and only a cancelled one
    assert report.counts["tasks_annotated_empty"] == 1
    assert any("'person' has no objects" in w for w in report.warnings)

    kept = build_dataset(config, BuildOptions(out=out, from_export=export, keep_empty=True))
    assert kept.counts["images"] == 6 and kept.counts["empty_images_kept"] == 3
    data = json.loads((out / "annotations" / "all.json").read_text())
    assert len(data["images"]) == 6 and len(data["annotations"]) == 3


def test_ground_truth_then_latest_annotation_counts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    helpers.write_image(root, "a.png", np.zeros((30, 30, 3), np.uint8))
    small = np.zeros((30, 30), bool)
    small[0:2, 0:2] = True
    big = np.zeros((30, 30), bool)
    big[0:20, 0:20] = True
    old = helpers.annotation([helpers.brush(small, "cat")], 1, updated_at="2026-11-20T10:00:00Z")
    new = helpers.annotation([helpers.brush(big, "cat")], 2, updated_at="2026-11-24T10:00:00Z")
    out = tmp_path / "dataset"
    config = helpers.offline_config(root, out, LABELS)

    export = helpers.write_export(tmp_path / "e1.json", [helpers.task(1, "a.png", [new, old])])
    build_dataset(config, BuildOptions(out=out, from_export=export, val_fraction=0))
    assert json.loads((out / "annotations" / "all.json").read_text())["annotations"][0]["area"] == 400

    gt_old = {**old, "ground_truth": True}
    export = helpers.write_export(tmp_path / "e2.json", [helpers.task(1, "a.png", [gt_old, new])])
    build_dataset(config, BuildOptions(out=out, from_export=export, val_fraction=0))
    assert json.loads((out / "annotations" / "all.json").read_text())["annotations"][0]["area"] == 4


def test_if_changed_skips_an_unchanged_project_and_rebuilds_after_an_edit(tmp_path: Path,
                                                                          project: tuple[Path, Path, dict]) -> None:
    root, export, _ = project
    out = tmp_path / "dataset"
    config = helpers.offline_config(root, out, LABELS)
    first = build_dataset(config, BuildOptions(out=out, from_export=export, if_changed=True))
    assert first.status == "built"
    again = build_dataset(config, BuildOptions(out=out, from_export=export, if_changed=True))
    assert again.status == "unchanged" and again.fingerprint == first.fingerprint

    tasks = json.loads(export.read_text())
    tasks[0]["annotations"][0]["updated_at"] = "2026-11-26T09:00:00Z"
    helpers.write_export(export, tasks)
    assert build_dataset(config, BuildOptions(out=out, from_export=export, if_changed=True)).status == "built"
    other_seed = build_dataset(config, BuildOptions(out=out, from_export=export, if_changed=True, seed=5))
    assert other_seed.status == "built"


def test_malformed_export_names_the_task(tmp_path: Path) -> None:
    root = tmp_path / "root"
    mask = np.ones((20, 20), bool)
    helpers.write_image(root, "a.png", np.zeros((20, 20, 3), np.uint8))
    helpers.write_image(root, "b.png", np.zeros((20, 20, 3), np.uint8))
    broken = helpers.brush(mask, "cat")
    del broken["value"]["rle"]
    tasks = [helpers.task(7, "a.png", [helpers.annotation([broken], 70)]),
             helpers.task(8, "b.png", [helpers.annotation([helpers.brush(mask, "cat")], 80)])]
    out = tmp_path / "dataset"
    config = helpers.offline_config(root, out, LABELS)
    report = build_dataset(config, BuildOptions(out=out, from_export=helpers.write_export(tmp_path / "e.json", tasks)))
    assert report.counts["images"] == 1
    assert report.failures == ["task 7: annotation 70: result 0 (brushlabels, id "
                               f"{broken['id']}): missing key 'value.rle'"]

    (tmp_path / "notjson.json").write_text('{"tasks": []}')
    with pytest.raises(ExportFormatError, match="not a Label Studio JSON export"):
        build_dataset(config, BuildOptions(out=out, from_export=tmp_path / "notjson.json"))
    (tmp_path / "cut.json").write_text(json.dumps(tasks)[:-40])
    with pytest.raises(ExportFormatError, match="broken JSON after task number 1"):
        build_dataset(config, BuildOptions(out=out, from_export=tmp_path / "cut.json"))


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(tmp_path: Path, project: tuple[Path, Path, dict]) -> None:
    root, export, _ = project
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(DatasetError, match="not a batchlabel dataset"):
        build_dataset(helpers.offline_config(root, out, LABELS), BuildOptions(out=out, from_export=export))
    assert (out / "thesis.tex").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".precious")]


def test_images_outside_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    helpers.write_image(tmp_path, "secret.png", np.zeros((10, 10, 3), np.uint8))
    tasks = [helpers.task(1, "../secret.png", [helpers.annotation([], 1)])]
    out = tmp_path / "dataset"
    with pytest.raises(DatasetError, match="task 1: image path '../secret.png' points outside storage.root"):
        build_dataset(helpers.offline_config(root, out, LABELS),
                      BuildOptions(out=out, from_export=helpers.write_export(tmp_path / "e.json", tasks),
                                   keep_empty=True))
    assert not os.path.exists(out)
