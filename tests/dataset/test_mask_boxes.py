"""--mask-boxes with LiteMedSAM's real weights: box-only objects become SAM masks, embeddings go to the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from batchlabel.config import parse_config
from batchlabel.dataset.builder import BuildOptions, build_dataset
from batchlabel.dataset.mask_boxes import sam_box_masker
from batchlabel.formats.coco_rle import coco_rle_to_mask
from batchlabel.infer.store import EmbeddingStore
from tests.dataset import helpers

pytestmark = pytest.mark.slow


def test_boxes_become_masks_of_the_object_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rgb = np.full((96, 128, 3), 20, np.uint8)
    yy, xx = np.mgrid[:96, :128]
    disc = (yy - 48) ** 2 + (xx - 60) ** 2 < 24**2
    rgb[disc] = (230, 230, 230)
    helpers.write_image(root, "disc.png", rgb)
    box = helpers.rectangle((30.0, 18.0, 91.0, 79.0), "cat", (96, 128), result_id="manual1")
    export = helpers.write_export(tmp_path / "e.json", [helpers.task(1, "disc.png", [helpers.annotation([box], 1)])])
    out = tmp_path / "dataset"
    config = parse_config({"storage": {"root": str(root)}, "label_studio": {"labels": ["cat"]},
                           "model": {"name": "litemedsam", "device": "cpu"},
                           "cache": {"dir": str(tmp_path / "cache")}, "dataset": {"out": str(out)}},
                          source="t.yaml", base_dir=tmp_path)

    report = build_dataset(config, BuildOptions(out=out, from_export=export, mask_boxes=True, val_fraction=0),
                           box_masker=sam_box_masker(config))
    assert "box_only" not in report.finding_counts
    annotation = json.loads((out / "annotations" / "all.json").read_text())["annotations"][0]
    mask = coco_rle_to_mask(annotation["segmentation"])
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.8, iou
    assert annotation["area"] == mask.sum()
    assert EmbeddingStore(config.embeddings_dir, max_bytes=1 << 30).size_bytes() > 0
