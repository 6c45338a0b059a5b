"""Ultralytics YOLO segment datasets: one polygon line per object, normalised to the image size.

Layout written by :class:`YoloWriter` under its root::

    images/{train,val}/<file name>     the images (hard links or copies, placed by the caller)
    labels/{train,val}/<stem>.txt      one line per object: ``<class index> x1 y1 x2 y2 ...`` (x / width, y / height)
    data.yaml                          ``path`` (the root, absolute), ``train``, ``val``, ``names`` {index: name}

Ultralytics finds a label file by replacing ``/images/`` with ``/labels/`` and the suffix with ``.txt``; an image
whose label file is empty is a background image. It derives boxes from the polygons, so one export trains both
detect and segment models.

Polygons: a mask's parts and holes become **one** ring (:func:`~batchlabel.formats.polygon.single_ring`:
zero-width cuts along a minimum spanning tree; a part whose cut would draw more background pixels than the part
covers, such as a stray pixel far from the rest, is left out and counted), traced a quarter pixel inside the pixel
edges (``outline="edges"``), so that Ultralytics' ``polygon2mask`` (``cv2.fillPoly`` on vertices truncated to
integers) gives the mask back, apart from the pixels along the cuts. Class indices count from 0 in the categories'
order (COCO category id - 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from batchlabel.formats.polygon import mask_to_polygon_parts, part_pixel_counts, single_ring

#: Decimals of the normalised coordinates: 1e-6 of a 10,000 px side is 0.01 px.
COORDINATE_DECIMALS = 6
_COORDINATE_FORMAT = f"%.{COORDINATE_DECIMALS}f"
#: How far a box polygon's corners sit inside the pixel-edge box, in pixels (as the traced outlines do).
BOX_INSET_PX = 0.25
SPLITS = ("train", "val")


def mask_to_yolo_polygon(mask: np.ndarray, *, tolerance_px: float = 0.25) -> np.ndarray | None:
    """(H, W) bool mask -> one (N, 2) float64 XY ring in pixel-corner coordinates (parts and holes joined by cuts;
    a part whose cut would draw more background pixels than the part covers is left out, see
    :func:`~batchlabel.formats.polygon.join_rings`).

    ``tolerance_px``: Douglas-Peucker tolerance in pixels. ``None`` for an empty mask.
    """
    parts = mask_to_polygon_parts(mask, tolerance_px=tolerance_px, min_area_px=0, outline="edges")
    joined = single_ring(parts, part_pixel_counts(mask, parts) if len(parts) > 1 else None)
    return None if joined is None else joined.ring


def box_polygon(box_xyxy: Sequence[float]) -> np.ndarray:
    """The (4, 2) XY polygon of a pixel-edge box ``(x1, y1, x2, y2)``, corners :data:`BOX_INSET_PX` inside.

    What an object without a usable mask outline (a box-only object) is written as; it rasterises to the pixels the
    box covers. A box thinner than twice the inset keeps its centre line on that side.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    inset_x = min(BOX_INSET_PX, (x2 - x1) / 2)
    inset_y = min(BOX_INSET_PX, (y2 - y1) / 2)
    x1, x2, y1, y2 = x1 + inset_x, x2 - inset_x, y1 + inset_y, y2 - inset_y
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def yolo_line(class_index: int, polygon: np.ndarray, width: int, height: int) -> str:
    """One label line: ``<class index> x1 y1 ...`` with the (N, 2) pixel-corner polygon divided by the image size.

    Coordinates are clipped to [0, 1] (Ultralytics refuses a label outside the image).
    """
    from batchlabel.formats.grid_text import quarter_steps, step_texts, table_pays_off

    pixels = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    steps_x, steps_y = quarter_steps(pixels[:, 0], width), quarter_steps(pixels[:, 1], height)
    pays_off = (table_pays_off(len(pixels), width, divisor=width, style="fixed6")
                & table_pays_off(len(pixels), height, divisor=height, style="fixed6"))  # both counted
    if steps_x is not None and steps_y is not None and pays_off:  # traced outlines: the same text from a table
        texts = np.empty(2 * len(pixels), dtype=object)
        texts[0::2] = step_texts(steps_x, divisor=width, style="fixed6")
        texts[1::2] = step_texts(steps_y, divisor=height, style="fixed6")
        return f"{int(class_index)} " + " ".join(texts.tolist())
    points = pixels / np.array([width, height], dtype=np.float64)
    values = np.clip(points, 0.0, 1.0).reshape(-1).tolist()
    return f"{int(class_index)} " + " ".join([_COORDINATE_FORMAT] * len(values)) % tuple(values)


def yolo_line_to_polygon(line: str, width: int, height: int) -> tuple[int, np.ndarray]:
    """Mirror of :func:`yolo_line`: ``(class index, (N, 2) XY pixel-corner polygon)``.

    Raises ``ValueError`` for a line that is not a class index followed by an even number (>= 6) of numbers.
    """
    fields = line.split()
    if len(fields) < 7 or len(fields) % 2 == 0:
        raise ValueError(f"a YOLO segment line needs a class index and >= 3 x y pairs, got {len(fields)} fields")
    points = np.array([float(value) for value in fields[1:]], dtype=np.float64).reshape(-1, 2)
    return int(fields[0]), points * np.array([width, height], dtype=np.float64)


def yolo_polygon_to_mask(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a pixel-corner polygon as Ultralytics does (``cv2.fillPoly`` on vertices truncated to integers)."""
    import cv2

    canvas = np.zeros((height, width), dtype=np.uint8)
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1)
    return canvas.astype(bool)


def export_name(task_id: int, rel_path: str) -> str:
    """An image's file name in flat export folders: ``<task id>_<file name>`` (two ``a.jpg`` in different folders
    are different tasks, so they never overwrite each other)."""
    return f"{int(task_id)}_{Path(rel_path).name}"


class YoloWriter:
    """Writes one YOLO dataset under ``root`` (created). The caller places each image at :meth:`image_path` and its
    labels at :meth:`label_path`, then :meth:`write_data_yaml`."""

    def __init__(self, root: Path, names: Sequence[str]) -> None:
        self.root = Path(root)
        self.names = list(names)
        for split in SPLITS:
            (self.root / "images" / split).mkdir(parents=True, exist_ok=True)
            (self.root / "labels" / split).mkdir(parents=True, exist_ok=True)

    def image_path(self, split: str, file_name: str) -> Path:
        """Where the image of ``split`` (``train`` or ``val``) named ``file_name`` goes."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.root / "images" / split / file_name

    def label_path(self, split: str, file_name: str) -> Path:
        """Where the label file of the image of ``split`` named ``file_name`` goes (one line per object, empty for a
        background image; see :func:`yolo_line`)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.root / "labels" / split / f"{Path(file_name).stem}.txt"

    def write_data_yaml(self, dataset_path: Path) -> Path:
        """``data.yaml`` naming ``dataset_path`` (where this root will be once the build is in place) as ``path``."""
        import yaml

        data = {"path": str(Path(dataset_path).absolute()), "train": "images/train", "val": "images/val",
                "names": dict(enumerate(self.names))}
        path = self.root / "data.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path
