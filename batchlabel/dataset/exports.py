"""The formats of one dataset build besides COCO RLE: ``coco-polygon``, ``yolo`` and ``voc`` (see ``--format``).

Every format gets the same images, split and categories as the COCO files; each object's mask is decoded once (from
the build's spool: COCO RLE, or COCO polygons with ``--segmentation polygon``), traced once into polygon parts and
handed to each format's writer in :mod:`batchlabel.formats`. Layout under the dataset folder:

    annotations/{all,train,val}_polygon.json   coco-polygon: COCO with polygon segmentation, next to the RLE files
    yolo/                                      yolo: see :mod:`batchlabel.formats.yolo`
    voc/                                       voc: see :mod:`batchlabel.formats.voc`

Images: :class:`ImagePlacer` hard-links every image file from the source (a copy when the source is on another
filesystem: one copy per image, every other format's file a hard link to that copy). YOLO and VOC folders are flat,
so their files are named ``<task id>_<file name>`` (:func:`~batchlabel.formats.yolo.export_name`).

Objects that no polygon can describe, counted in the summary and never dropped silently:
- a box-only object (a Label Studio rectangle without a mask) is its box polygon in YOLO, ``segmentation: []`` in
  coco-polygon (as in the COCO RLE file) and not painted in VOC;
- a mask whose outline cannot be traced into a polygon of 3 points (none is known: a one-pixel object is a
  0.5 x 0.5 px square) is written as its box polygon.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class ImagePlacer:
    """Puts image files into a build: a hard link to the source; if that fails (another filesystem), one copy, then
    hard links to that copy for the image's other places. ``counts``: ``{"link": n, "copy": n}``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def place(self, source: Path, targets: Sequence[Path]) -> None:
        placed: Path | None = None
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(placed or source, target)
                self.counts["link"] += 1
            except OSError:
                shutil.copy2(placed or source, target)
                self.counts["copy"] += 1
            placed = placed or target


def object_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """An object's (H, W) bool mask from its COCO ``segmentation`` (RLE dict or polygon lists); None if box-only."""
    if isinstance(segmentation, dict):
        from batchlabel.infer.codecs.coco_rle import coco_rle_to_mask

        return coco_rle_to_mask(segmentation)
    if segmentation:
        from batchlabel.formats.coco_polygon import coco_polygons_to_mask

        return coco_polygons_to_mask(segmentation, height, width)
    return None


def _box_xyxy(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h)


class ExportWriters:
    """The non-COCO-RLE formats of one build, written under ``stage`` (the build's folder before it is moved to
    ``out``). Call :meth:`image_targets` for every image (in image-id order), then :meth:`add_image` for every
    image, then :meth:`close`."""

    def __init__(
        self,
        stage: Path,
        out: Path,
        formats: Sequence[str],
        labels: Sequence[str],
        *,
        coco_info: dict[str, Any],
        tolerance_px: float,
    ) -> None:
        from batchlabel.dataset.coco import CocoWriter, categories_for
        from batchlabel.formats.voc import VocWriter
        from batchlabel.formats.yolo import YoloWriter

        self.stage, self.out, self.labels = stage, out, list(labels)
        self.formats = tuple(formats)
        self.tolerance_px = tolerance_px
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in self.formats if name != "coco"}
        self.coco_polygon = None
        if "coco-polygon" in self.formats:
            info = {**coco_info, "segmentation": "polygon"}
            self.coco_polygon = {
                name: CocoWriter(stage / "annotations" / f"{name}_polygon.json", categories=categories_for(labels),
                                 info=info)
                for name in ("all", "train", "val")
            }
        self.yolo = YoloWriter(stage / "yolo", labels) if "yolo" in self.formats else None
        self.voc = VocWriter(stage / "voc", labels) if "voc" in self.formats else None

    @property
    def active(self) -> bool:
        """Whether any format besides ``coco`` was asked for."""
        return bool(self.counts)

    def image_targets(self, image: dict[str, Any], split: str, task_id: int) -> list[Path]:
        """Where this image's file goes in each format (``image``: its COCO images entry); also writes the entry
        into the coco-polygon files."""
        from batchlabel.formats.yolo import export_name

        targets: list[Path] = []
        if self.coco_polygon is not None:
            self.coco_polygon["all"].add_image(image)
            self.coco_polygon[split].add_image(image)
        name = export_name(task_id, image["file_name"])
        if self.yolo is not None:
            targets.append(self.yolo.image_path(split, name))
        if self.voc is not None:
            targets.append(self.voc.image_path(name))
        return targets

    def add_image(
        self, image: dict[str, Any], split: str, task_id: int, annotations: Sequence[dict[str, Any]]
    ) -> None:
        """Write one image's objects (its COCO annotations, with ids) in every format."""
        from batchlabel.formats.coco_polygon import parts_to_coco_polygons
        from batchlabel.formats.voc import MAX_INDEX, masks_to_voc_maps
        from batchlabel.formats.yolo import box_polygon, export_name, yolo_line
        from batchlabel.infer.codecs.polygon import mask_to_polygon_parts, single_ring

        height, width = int(image["height"]), int(image["width"])
        name = export_name(task_id, image["file_name"])
        yolo_lines: list[str] = []
        voc_masks: list[np.ndarray] = []
        voc_classes: list[int] = []
        for annotation in annotations:
            category_id = int(annotation["category_id"])
            mask = object_mask(annotation["segmentation"], height, width)
            parts = (mask_to_polygon_parts(mask, tolerance_px=self.tolerance_px, min_area_px=0, outline="edges")
                     if mask is not None else [])
            if self.coco_polygon is not None:
                polygons = parts_to_coco_polygons(parts)
                if mask is not None and not polygons:
                    polygons = [box_polygon(_box_xyxy(annotation["bbox"])).reshape(-1).tolist()]
                    self.counts["coco-polygon"]["box_polygons"] += 1
                entry = {**annotation, "segmentation": polygons}
                self.coco_polygon["all"].add_annotation(entry)
                self.coco_polygon[split].add_annotation(entry)
                self.counts["coco-polygon"]["objects"] += 1
            if self.yolo is not None:
                ring = single_ring(parts)
                if ring is None:
                    ring = box_polygon(_box_xyxy(annotation["bbox"]))
                    self.counts["yolo"]["box_polygons"] += 1
                yolo_lines.append(yolo_line(category_id - 1, ring, width, height))
            if self.voc is not None:
                if mask is None:
                    self.counts["voc"]["box_only_not_painted"] += 1
                elif len(voc_masks) >= MAX_INDEX:
                    self.counts["voc"]["over_254_objects_not_painted"] += 1
                else:
                    voc_masks.append(mask)
                    voc_classes.append(category_id)
        if self.yolo is not None:
            self.yolo.write_labels(split, name, yolo_lines)
            self.counts["yolo"]["objects"] += len(yolo_lines)
            self.counts["yolo"]["images"] += 1
        if self.voc is not None:
            classes, objects = masks_to_voc_maps(voc_masks, voc_classes, height, width)
            self.voc.write_masks(split, name, classes, objects)
            self.counts["voc"]["objects"] += len(voc_masks)
            self.counts["voc"]["images"] += 1

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish every file; returns the summary per format (paths relative to the dataset folder, counts)."""
        summary: dict[str, dict[str, Any]] = {}
        if self.coco_polygon is not None:
            for writer in self.coco_polygon.values():
                writer.close()
            summary["coco-polygon"] = {"files": [f"annotations/{n}_polygon.json" for n in ("all", "train", "val")],
                                       **self.counts["coco-polygon"]}
        if self.yolo is not None:
            self.yolo.write_data_yaml(self.out / "yolo")
            summary["yolo"] = {"data_yaml": "yolo/data.yaml", **self.counts["yolo"]}
        if self.voc is not None:
            self.voc.close()
            summary["voc"] = {"root": "voc", **self.counts["voc"]}
        return summary
