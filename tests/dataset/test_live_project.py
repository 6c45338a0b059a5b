"""build-dataset against a real Label Studio: brush annotations written through the SDK come back pixel-identical,
the live source and a JSON export of the project give identical files, and build_if_complete versions the output."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from batchlabel.config import Config
from batchlabel.dataset.builder import BuildOptions, build_dataset
from batchlabel.dataset.completion import CompletionRule, build_if_complete
from batchlabel.sync.client import image_url
from batchlabel.sync.label_config import generate_label_config
from tests.dataset import helpers
from tests.dataset.test_builder import coco_eval_ap

pytestmark = pytest.mark.labelstudio

LABELS = ["cat", "person", "bottle"]


def create_project(label_studio: Any, config: Config, tasks: list[dict[str, Any]]) -> tuple[int, list[int]]:
    """Create the config's project, import the tasks' images, annotate them through the SDK; returns ids."""
    client = label_studio.client
    project = client.projects.create(title=config.label_studio.project, label_config=generate_label_config(LABELS))
    imported = client.projects.import_tasks(id=project.id, request=[{"data": t["data"]} for t in tasks],
                                            return_task_ids=True)
    task_ids = list(imported.task_ids)
    for task_id, task in zip(task_ids, tasks, strict=True):
        for annotation in task["annotations"]:
            client.annotations.create(id=task_id, result=annotation["result"])
    return project.id, task_ids


def export_json(label_studio: Any, project_id: int, path: Path) -> Path:
    """What the UI's Export > JSON button downloads."""
    response = httpx.get(f"{label_studio.url}/api/projects/{project_id}/export",
                         params={"exportType": "JSON", "download_all_tasks": "true"},
                         headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=60)
    response.raise_for_status()
    path.write_bytes(response.content)
    return path


def test_live_round_trip_and_export_give_identical_files(
    label_studio: Any, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    from pycocotools.coco import COCO

    prefix = f"dataset-{uuid.uuid4().hex[:8]}"
    config = make_config(storage={"root": str(label_studio.document_root)}, label_studio={"labels": LABELS})
    tasks, truth = helpers.ground_truth_project(label_studio.document_root, LABELS, prefix=prefix)
    helpers.write_image(label_studio.document_root, f"{prefix}/todo.png", np.zeros((20, 30, 3), np.uint8))
    tasks.append({"data": {"image": image_url(f"{prefix}/todo.png")}, "annotations": []})  # not labeled yet
    project_id, _ = create_project(label_studio, config, tasks)

    live_out = tmp_path / "live"
    report = build_dataset(config, BuildOptions(out=live_out, val_fraction=0.3), client=label_studio.client)
    assert report.counts["images"] == len(truth) and report.counts["tasks_unannotated"] == 1
    assert not report.failures
    coco = COCO(str(live_out / "annotations" / "all.json"))
    checked = 0
    for image in coco.dataset["images"]:
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        expected = truth[image["file_name"]]
        assert [a["category_id"] for a in annotations] == [c for _, c in expected]
        for ann, (mask, _) in zip(annotations, expected, strict=True):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            assert ann["iscrowd"] == 0 and ann["area"] == mask.sum()
            checked += 1
    assert checked == sum(len(v) for v in truth.values())
    assert coco_eval_ap(live_out / "annotations" / "all.json") == pytest.approx(1.0)
    manifest = json.loads((live_out / "manifest.json").read_text())
    assert manifest["source"]["project_id"] == project_id and manifest["source"]["kind"] == "project"

    export = export_json(label_studio, project_id, tmp_path / "export.json")
    file_out = tmp_path / "from-export"
    build_dataset(config, BuildOptions(out=file_out, from_export=export, val_fraction=0.3))
    for split in ("all", "train", "val"):
        assert (live_out / "annotations" / f"{split}.json").read_bytes() == \
            (file_out / "annotations" / f"{split}.json").read_bytes(), split


def half_annotated_project(label_studio: Any, config: Config, prefix: str) -> tuple[list[int], np.ndarray]:
    """Two 30x20 images in ``config``'s project, the first annotated with a brush mask; returns task ids and mask."""
    mask = np.zeros((20, 30), bool)
    mask[2:9, 3:12] = True
    tasks = []
    for index in range(2):
        rel = f"{prefix}/{index}.png"
        helpers.write_image(label_studio.document_root, rel, np.zeros((20, 30, 3), np.uint8))
        annotations = [helpers.annotation([helpers.brush(mask, "cat")], 1)] if index == 0 else []
        tasks.append({"data": {"image": image_url(rel)}, "annotations": annotations})
    _, task_ids = create_project(label_studio, config, tasks)
    return task_ids, mask


def test_build_if_complete_waits_for_the_last_task_then_versions(
    label_studio: Any, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(storage={"root": str(label_studio.document_root)}, label_studio={"labels": LABELS},
                         dataset={"out": str(tmp_path / "datasets"), "val_fraction": 0.0,
                                  "formats": ["coco", "yolo"]})
    task_ids, mask = half_annotated_project(label_studio, config, f"complete-{uuid.uuid4().hex[:8]}")

    assert build_if_complete(config, rule=CompletionRule("all"), client=label_studio.client) is None
    half = build_if_complete(config, rule=CompletionRule("fraction", fraction=0.5), client=label_studio.client)
    assert half is not None and half.name.startswith("v0001-")
    assert (tmp_path / "datasets" / "latest").resolve() == half.resolve()

    label_studio.client.annotations.create(id=task_ids[1], result=[helpers.brush(mask, "person")])
    full = build_if_complete(config, rule=CompletionRule("all"), client=label_studio.client)
    assert full is not None and full.name.startswith("v0002-")
    assert (tmp_path / "datasets" / "latest").resolve() == full.resolve()
    assert json.loads((full / "manifest.json").read_text())["counts"]["images"] == 2
    assert list(json.loads((full / "manifest.json").read_text())["formats"]) == ["coco", "yolo"]  # the config's
    assert len(list((full / "yolo" / "labels" / "train").glob("*.txt"))) == 2
    assert build_if_complete(config, rule=CompletionRule("all"), client=label_studio.client) is None  # unchanged
