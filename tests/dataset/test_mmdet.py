"""Rendered mmdetection configs parse with mmengine.Config and name the right classes, counts and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.dataset.mmdet import TEMPLATES, write_mmdet_config

mmengine_config = pytest.importorskip("mmengine.config", reason="mmengine is a dev dependency (pip install -e .[dev])")

CLASSES = ["cat", "person's bag", 'say "hi"']


def head_num_classes(cfg: object, template: str) -> list[int]:
    model = cfg.model  # type: ignore[attr-defined]
    if template.startswith("mask-rcnn"):
        return [model.roi_head.bbox_head.num_classes, model.roi_head.mask_head.num_classes]
    return [model.bbox_head.num_classes]


@pytest.mark.parametrize("template", TEMPLATES)
def test_rendered_config_parses_with_the_dataset_values(tmp_path: Path, template: str) -> None:
    path = write_mmdet_config(template, tmp_path, classes=CLASSES, num_train_images=8, num_val_images=2, seed=7)
    cfg = mmengine_config.Config.fromfile(str(path))
    assert cfg.metainfo.classes == tuple(CLASSES)
    assert cfg.num_classes == 3 and head_num_classes(cfg, template) == [3] * len(head_num_classes(cfg, template))
    root = str(tmp_path.absolute()) + "/"
    assert cfg.data_root == root
    train, val = cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
    assert (train.data_root, train.ann_file, train.data_prefix.img) == (root, "annotations/train.json", "images/")
    assert (val.data_root, val.ann_file, val.test_mode) == (root, "annotations/val.json", True)
    assert train.metainfo.classes == val.metainfo.classes == tuple(CLASSES)
    assert cfg.val_evaluator.type == "CocoMetric"
    assert cfg.val_evaluator.ann_file == root + "annotations/val.json"
    assert cfg.val_evaluator.metric == ["bbox", "segm"]
    assert cfg.test_dataloader.dataset.ann_file == "annotations/val.json"
    assert cfg.randomness.seed == 7
    assert train.filter_cfg.filter_empty_gt is True


@pytest.mark.parametrize("template", TEMPLATES)
def test_no_val_images_renders_no_val_loop(tmp_path: Path, template: str) -> None:
    path = write_mmdet_config(template, tmp_path, classes=["cat"], num_train_images=1, num_val_images=0,
                              keep_empty=True)
    cfg = mmengine_config.Config.fromfile(str(path))
    assert cfg.val_dataloader is None and cfg.val_evaluator is None and cfg.val_cfg is None
    assert cfg.train_dataloader.dataset.ann_file == "annotations/train.json"
    assert cfg.train_dataloader.dataset.filter_cfg.filter_empty_gt is False


def test_unknown_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown mmdetection template 'yolo'"):
        write_mmdet_config("yolo", tmp_path, classes=["cat"], num_train_images=1, num_val_images=0)
