"""One Label Studio task (JSON export form) -> one COCO image and its objects.

Conventions:
- Image space is the image after EXIF orientation, what Label Studio displayed. ``width``/``height`` come from the
  results' ``original_width``/``original_height`` and must equal the image file's size after EXIF orientation.
- ``brushlabels`` (Label Studio RLE) and ``polygonlabels`` (percent points) become binary masks; a mask with holes
  or several parts is **one** object. ``rectanglelabels`` become box-only objects (``segmentation: []``, area = box
  area), unless a mask object of the same label covers the same box (IoU >= :data:`COMPANION_BOX_IOU`): batchlabel's
  pre-annotations carry a rectangle next to each mask, and such a rectangle is the mask's companion, not a second
  object. ``keypointlabels`` (smart-tool prompts) and non-region results are ignored.
- COCO ``segmentation`` is compressed RLE (``segmentation="rle"``) or polygon lists in pixel-corner coordinates
  (``"polygon"``); ``area`` and ``bbox`` (``[x, y, w, h]`` pixel edges) come from the same mask the segmentation
  decodes to, ``iscrowd`` is always 0.
- Regions of one object: batchlabel's pre-annotation items share a group id (``<group>_brush``, ``<group>_rect``,
  ``<group>_poly0``...; :mod:`batchlabel.sync.results`). A group is one object: its brush mask when it has one, else
  the union of its polygons (the parts of a multi-part object), else its rectangle.
- Problems with the data that do not stop the build (empty masks, parts outside the image, tiny objects, unknown
  labels) are returned as :class:`Finding` values; malformed tasks raise
  :class:`~batchlabel.dataset.ls_export.DatasetError` naming the task, the annotation and the result.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.dataset.ls_export import DatasetError, ExportFormatError, image_rel_path, resolve_image_path

#: A rectangle whose box overlaps a same-label mask's box at least this much is that mask's companion.
COMPANION_BOX_IOU = 0.7
#: A polygon whose mask overlaps a same-label brush mask at least this much is the same object drawn twice.
COMPANION_MASK_IOU = 0.8
#: Objects smaller than this many pixels are reported as suspicious (kept).
TINY_AREA_PX = 16
#: EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_REGION_TYPES = ("brushlabels", "polygonlabels", "rectanglelabels")
#: Result ids batchlabel gives the items of one object (``batchlabel.sync.results``): ``<group>_<kind>``.
_GROUPED_ID = re.compile(r"(.+)_(?:brush|rect|poly\d+)")

#: ``(image path, (height, width), boxes (K, 4) XYXY pixels) -> K (H, W) bool masks``: turns box-only objects into
#: masks (``--mask-boxes``).
BoxMasker = Callable[[Path, tuple[int, int], np.ndarray], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Finding:
    """Something suspicious about one task's data; ``kind`` is a short key (``empty_mask``, ``tiny_object``, ...)."""

    kind: str
    task_id: int
    message: str


@dataclass(frozen=True)
class CocoObject:
    """One COCO annotation without its ``id``/``image_id`` (assigned when the dataset is written).

    ``segmentation``: COCO compressed RLE dict, a list of flat polygon lists ``[x1, y1, x2, y2, ...]`` (pixel
    corners), or ``[]`` for a box-only object. ``bbox``: ``[x, y, width, height]`` pixels. ``kind``: ``"mask"``,
    ``"polygon"`` or ``"box"`` (what the Label Studio region was). ``mask``: the object's exact (H, W) bool mask
    while the task is being built (None for a box-only object; the other formats are rendered from it).
    """

    category_id: int
    segmentation: Any
    area: float
    bbox: list[float]
    kind: str
    result_id: str | None = None
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ConvertedTask:
    """A task turned into an image record: ``annotation`` is None when the task had no annotation that counts."""

    task_id: int
    rel_path: str
    path: Path
    width: int
    height: int
    annotation: dict[str, Any] | None
    objects: tuple[CocoObject, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)


def oriented_image_size(path: Path, *, task_id: Any) -> tuple[int, int]:
    """``(height, width)`` of an image file after EXIF orientation, read from the header only (no pixel decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format == "PNG":
                # PNG's getexif() decodes every pixel when the eXIf chunk is not before the image data
                raw = image.info.get("exif")
                exif = Image.Exif()
                if raw:
                    exif.load(raw)
                orientation = exif.get(0x0112, 1)
            else:
                orientation = image.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise DatasetError(f"task {task_id}: image file {path} not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"task {task_id}: cannot read image {path}: {error}") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return height, width


def annotation_summary(annotation: dict[str, Any]) -> dict[str, Any]:
    """The annotation's identity for the manifest: id, timestamps, author, ground truth, source prediction."""
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id", completed_by.get("email"))
    return {
        "id": annotation.get("id"),
        "created_at": annotation.get("created_at"),
        "updated_at": annotation.get("updated_at"),
        "completed_by": completed_by,
        "ground_truth": bool(annotation.get("ground_truth")),
        "parent_prediction": annotation.get("parent_prediction"),
    }


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _degrees(value: Any, where: str, key: str) -> float:
    """A rotation in degrees (absent, null or 0: 0). Raises :class:`ExportFormatError` naming ``where`` and ``key``
    when it is not a finite number."""
    try:
        degrees = float(value or 0)
    except (TypeError, ValueError):
        degrees = math.nan
    if not math.isfinite(degrees):
        raise ExportFormatError(f"{where}: {key} must be a number of degrees, got {value!r:.60}")
    return degrees


def _rotated_box_corners(box: tuple[float, float, float, float], degrees: float) -> np.ndarray:
    """Corners (4, 2) XY pixels of a Label Studio rectangle rotated by ``degrees`` clockwise about its (x1, y1)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    local = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    rotation = np.array([[cos, -sin], [sin, cos]])
    return local @ rotation.T + np.array([x1, y1])


@dataclass
class _Region:
    category_id: int
    kind: str
    result_id: str | None
    mask: np.ndarray | None = None
    polygons: list[np.ndarray] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None


def _group_key(result_id: str | None, category_id: int, index: int) -> tuple[Any, ...]:
    """Regions of one object share a key: batchlabel's ``<group>_brush|_rect|_polyN`` ids, else each its own."""
    if result_id:
        match = _GROUPED_ID.fullmatch(result_id)
        if match:
            return ("group", match.group(1), category_id)
    return ("single", index)


class TaskConverter:
    """Converts exported tasks to :class:`ConvertedTask` records for one dataset build.

    Args:
        labels: category names in label-config order; category id = position + 1.
        root: ``storage.root``, the Label Studio local-files document root the ``?d=`` paths are relative to.
        image_key: the task data key of the labeling config's image (``"image"``).
        segmentation: ``"rle"`` or ``"polygon"``.
        polygon_tolerance_px: simplification of brush masks traced into polygons (``segmentation="polygon"``).
        box_masker: when given, box-only objects become masks through it (``--mask-boxes``).
    """

    def __init__(
        self,
        labels: Sequence[str],
        root: Path,
        *,
        image_key: str = "image",
        segmentation: str = "rle",
        polygon_tolerance_px: float = 1.5,
        tiny_area_px: int = TINY_AREA_PX,
        box_masker: BoxMasker | None = None,
    ) -> None:
        if segmentation not in ("rle", "polygon"):
            raise ValueError(f"segmentation must be 'rle' or 'polygon', got {segmentation!r}")
        self.category_ids = {label: index + 1 for index, label in enumerate(labels)}
        self.root = Path(root)
        self.image_key = image_key
        self.segmentation = segmentation
        self.polygon_tolerance_px = polygon_tolerance_px
        self.tiny_area_px = tiny_area_px
        self.box_masker = box_masker

    # -- the task ---------------------------------------------------------------------------------------------------
    def convert(self, task: dict[str, Any], annotation: dict[str, Any] | None) -> ConvertedTask:
        """Convert ``task`` with the annotation that counts for it (:func:`~.ls_export.select_annotation`)."""
        task_id = task.get("id")
        if not isinstance(task_id, int):
            raise ExportFormatError(
                f"a task has no integer 'id' (got {task_id!r}); is this a Label Studio JSON export?"
            )
        rel_path = image_rel_path(task, self.image_key)
        path = resolve_image_path(rel_path, self.root, task_id=task_id)
        file_height, file_width = oriented_image_size(path, task_id=task_id)
        findings: list[Finding] = []
        if annotation is None:
            return ConvertedTask(task_id, rel_path, path, file_width, file_height, None, (), ())

        where_annotation = f"task {task_id}: annotation {annotation.get('id')}"
        result = annotation.get("result")
        if result is None:
            result = []
        if not isinstance(result, list):
            raise ExportFormatError(f"{where_annotation}: 'result' must be a list, got {type(result).__name__}")
        regions: list[_Region] = []
        size: tuple[int, int] | None = None
        for index, item in enumerate(result):
            if not isinstance(item, dict):
                raise ExportFormatError(f"{where_annotation}: result {index}: expected an object, got {item!r:.60}")
            kind = item.get("type")
            if kind not in _REGION_TYPES:
                continue
            where = f"{where_annotation}: result {index} ({kind}, id {item.get('id')})"
            item_size = self._item_size(item, where)
            if size is None:
                size = item_size
                if size != (file_height, file_width):
                    raise DatasetError(
                        f"{where}: labeled on a {size[1]}x{size[0]} (width x height) image but {path} is "
                        f"{file_width}x{file_height} after EXIF orientation; was the file replaced after labeling?"
                    )
            elif item_size != size:
                raise ExportFormatError(
                    f"{where}: original size {item_size[1]}x{item_size[0]} differs from the annotation's other "
                    f"results ({size[1]}x{size[0]})"
                )
            region = self._region(item, kind, where, size, task_id, findings)
            if region is not None:
                regions.append(region)

        height, width = file_height, file_width
        objects = self._objects(regions, path, height, width, task_id, findings)
        summary = annotation_summary(annotation)
        return ConvertedTask(task_id, rel_path, path, width, height, summary, tuple(objects), tuple(findings))

    # -- one result item --------------------------------------------------------------------------------------------
    @staticmethod
    def _item_size(item: dict[str, Any], where: str) -> tuple[int, int]:
        try:
            width = int(item["original_width"])
            height = int(item["original_height"])
        except KeyError as error:
            raise ExportFormatError(f"{where}: missing key {error.args[0]!r}") from None
        except (TypeError, ValueError):
            raise ExportFormatError(
                f"{where}: original_width/original_height must be integers, got "
                f"{item.get('original_width')!r}/{item.get('original_height')!r}"
            ) from None
        if width <= 0 or height <= 0:
            raise ExportFormatError(f"{where}: original size {width}x{height} is not positive")
        rotation = _degrees(item.get("image_rotation"), where, "image_rotation")
        if rotation % 360 != 0:
            raise DatasetError(
                f"{where}: the image was rotated by {item['image_rotation']} degrees in Label Studio (image_rotation); "
                "batchlabel cannot place such regions on the image file. Reset the rotation in the labeling UI and "
                "update the annotation, or rotate the file itself and relabel"
            )
        return height, width

    def _region(
        self,
        item: dict[str, Any],
        kind: str,
        where: str,
        size: tuple[int, int],
        task_id: int,
        findings: list[Finding],
    ) -> _Region | None:
        from batchlabel.formats.box import box_from_percent
        from batchlabel.formats.brush import brush_rle_to_mask
        from batchlabel.formats.polygon import polygon_from_percent

        height, width = size
        value = item.get("value")
        if not isinstance(value, dict):
            raise ExportFormatError(f"{where}: missing key 'value'")
        labels = value.get(kind)
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ExportFormatError(
                f"{where}: value.{kind} must be a non-empty list of label strings, got {labels!r:.60}"
            )
        label = labels[0]
        if len(labels) > 1:
            findings.append(Finding("multi_label", task_id, f"{where}: several labels {labels}; using {label!r}"))
        category_id = self.category_ids.get(label)
        if category_id is None:
            findings.append(Finding(
                "unknown_label", task_id,
                f"{where}: label {label!r} is not in the labeling config {list(self.category_ids)}; object skipped",
            ))
            return None
        result_id = item.get("id")
        region = _Region(category_id=category_id, kind=kind, result_id=str(result_id) if result_id else None)
        if kind == "brushlabels":
            if value.get("format", "rle") != "rle":
                raise ExportFormatError(f"{where}: value.format is {value.get('format')!r}; only 'rle' brushes exist")
            if "rle" not in value:
                raise ExportFormatError(f"{where}: missing key 'value.rle'")
            try:
                region.mask = brush_rle_to_mask(value["rle"], height, width)
            except (ValueError, TypeError) as error:
                raise ExportFormatError(f"{where}: value.rle: {error}") from None
        elif kind == "polygonlabels":
            if "points" not in value:
                raise ExportFormatError(f"{where}: missing key 'value.points'")
            try:
                polygon = polygon_from_percent(value["points"], width, height)
            except (ValueError, TypeError) as error:
                raise ExportFormatError(f"{where}: value.points: {error}") from None
            if len(polygon) < 3:
                findings.append(Finding("empty_mask", task_id, f"{where}: polygon with {len(polygon)} points skipped"))
                return None
            outside = (polygon < -1e-6).any() or (polygon[:, 0] > width + 1e-6).any()
            if outside or (polygon[:, 1] > height + 1e-6).any():
                findings.append(Finding("outside_image", task_id,
                                        f"{where}: polygon points outside the image; clipped"))
                polygon = np.clip(polygon, 0, [width, height])
            region.polygons = [polygon]
        else:
            try:
                box = box_from_percent(value, width, height)
            except KeyError as error:
                raise ExportFormatError(f"{where}: missing key 'value.{error.args[0]}'") from None
            except (TypeError, ValueError) as error:
                raise ExportFormatError(f"{where}: value x/y/width/height must be numbers: {error}") from None
            rotation = _degrees(value.get("rotation"), where, "value.rotation")
            if rotation % 360:
                corners = _rotated_box_corners(box, rotation)
                box = (*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist())
                findings.append(Finding("rotated_box", task_id,
                                        f"{where}: rectangle rotated {rotation} degrees; using its enclosing box"))
            x1, y1, x2, y2 = box
            clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
                       min(max(x2, 0.0), width), min(max(y2, 0.0), height))
            if clipped != tuple(box):
                findings.append(Finding("outside_image", task_id, f"{where}: rectangle outside the image; clipped"))
            region.box = clipped
        return region

    # -- regions -> COCO objects ------------------------------------------------------------------------------------
    def _objects(
        self,
        regions: list[_Region],
        path: Path,
        height: int,
        width: int,
        task_id: int,
        findings: list[Finding],
    ) -> list[CocoObject]:
        from batchlabel.formats.polygon import polygons_to_mask

        grouped: dict[tuple[Any, ...], list[_Region]] = {}
        for index, region in enumerate(regions):
            grouped.setdefault(_group_key(region.result_id, region.category_id, index), []).append(region)
        masked: list[tuple[_Region, np.ndarray]] = []
        boxes: list[_Region] = []
        for members in grouped.values():
            brushes = [r for r in members if r.kind == "brushlabels"]
            polygons = [r for r in members if r.kind == "polygonlabels"]
            if brushes:  # the exact form wins; the group's polygons and rectangle describe the same object
                lead = brushes[0]
                mask = np.logical_or.reduce([np.asarray(r.mask) for r in brushes]) if len(brushes) > 1 else lead.mask
            elif polygons:  # the parts of one object
                lead = _Region(polygons[0].category_id, "polygonlabels", polygons[0].result_id,
                               polygons=[p for r in polygons for p in r.polygons])
                mask = polygons_to_mask(lead.polygons[:1], height, width)
                for polygon in lead.polygons[1:]:
                    mask |= polygons_to_mask([polygon], height, width)
            else:
                boxes.extend(members)
                continue
            assert mask is not None
            if not mask.any():
                findings.append(Finding("empty_mask", task_id,
                                        f"task {task_id}: {lead.kind} region {lead.result_id} has an empty mask; "
                                        "skipped"))
                continue
            masked.append((lead, mask))
        masked = self._drop_companion_polygons(masked, task_id, findings)

        objects: list[CocoObject] = []
        for region, mask in masked:
            objects.append(self._mask_object(region, mask, height, width, task_id, findings))

        mask_boxes = [(obj.category_id, obj.bbox) for obj in objects]
        box_only: list[_Region] = []
        for region in boxes:
            assert region.box is not None
            x1, y1, x2, y2 = region.box
            xywh = [x1, y1, x2 - x1, y2 - y1]
            if xywh[2] <= 0 or xywh[3] <= 0:
                findings.append(Finding("empty_mask", task_id,
                                        f"task {task_id}: rectangle {region.result_id} has no area; skipped"))
                continue
            if any(cid == region.category_id and _box_iou(xywh, bbox) >= COMPANION_BOX_IOU for cid, bbox in mask_boxes):
                continue  # the companion rectangle of a mask
            box_only.append(region)

        if box_only and self.box_masker is not None:
            prompts = np.array([region.box for region in box_only], dtype=np.float64)
            masks = self.box_masker(path, (height, width), prompts)
            for region, mask in zip(box_only, masks, strict=True):
                mask = np.asarray(mask, dtype=bool)
                if not mask.any():
                    findings.append(Finding("empty_mask", task_id,
                                            f"task {task_id}: SAM gave an empty mask for rectangle {region.result_id}; "
                                            "kept as a box"))
                    objects.append(self._box_object(region, task_id, findings))
                    continue
                objects.append(self._mask_object(region, mask, height, width, task_id, findings))
        else:
            for region in box_only:
                objects.append(self._box_object(region, task_id, findings))
        return objects

    def _drop_companion_polygons(
        self, masked: list[tuple[_Region, np.ndarray]], task_id: int, findings: list[Finding]
    ) -> list[tuple[_Region, np.ndarray]]:
        brushes = [(region, mask) for region, mask in masked if region.kind == "brushlabels"]
        if not brushes or len(brushes) == len(masked):
            return masked
        kept = []
        for region, mask in masked:
            if region.kind == "polygonlabels":
                for other, other_mask in brushes:
                    if other.category_id != region.category_id:
                        continue
                    inter = np.logical_and(mask, other_mask).sum()
                    union = np.logical_or(mask, other_mask).sum()
                    if union and inter / union >= COMPANION_MASK_IOU:
                        break
                else:
                    kept.append((region, mask))
                continue
            kept.append((region, mask))
        return kept

    def _mask_object(
        self, region: _Region, mask: np.ndarray, height: int, width: int, task_id: int, findings: list[Finding]
    ) -> CocoObject:
        from batchlabel.formats.coco_rle import coco_rle_area, coco_rle_bbox, mask_to_coco_rle

        kind = {"brushlabels": "mask", "polygonlabels": "polygon", "rectanglelabels": "mask"}[region.kind]
        segmentation: Any = None
        if self.segmentation == "polygon":
            segmentation = self._polygon_segmentation(region, mask, task_id, findings)
            area, bbox = _polygon_area_bbox(segmentation, height, width)
            if area <= 0:  # too thin to trace: keep the exact mask as RLE rather than lose the object
                segmentation = None
        if segmentation is None:
            segmentation = mask_to_coco_rle(_column_major(mask))
            area, bbox = float(coco_rle_area(segmentation)), [float(v) for v in coco_rle_bbox(segmentation)]
        if area < self.tiny_area_px:
            findings.append(Finding("tiny_object", task_id,
                                    f"task {task_id}: {region.kind} region {region.result_id} covers {area:g} px"))
        return CocoObject(region.category_id, segmentation, area, bbox, kind, region.result_id, mask)

    def _polygon_segmentation(
        self, region: _Region, mask: np.ndarray, task_id: int, findings: list[Finding]
    ) -> list[list[float]]:
        from batchlabel.formats.polygon import mask_to_polygon_parts

        if region.polygons:
            return [np.round(polygon, 3).reshape(-1).tolist() for polygon in region.polygons]
        parts = mask_to_polygon_parts(mask, tolerance_px=self.polygon_tolerance_px, min_area_px=0)
        if any(part.holes for part in parts):
            findings.append(Finding("holes_dropped", task_id,
                                    f"task {task_id}: brush region {region.result_id} has holes, which COCO polygons "
                                    "cannot hold; use --segmentation rle to keep them"))
        return [np.round(part.outer, 3).reshape(-1).tolist() for part in parts if len(part.outer) >= 3]

    @staticmethod
    def _box_object(region: _Region, task_id: int, findings: list[Finding]) -> CocoObject:
        assert region.box is not None
        x1, y1, x2, y2 = region.box
        findings.append(Finding("box_only", task_id,
                                f"task {task_id}: rectangle {region.result_id} has no mask (segmentation []); "
                                "use --mask-boxes to segment it with SAM"))
        bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
        return CocoObject(region.category_id, [], bbox[2] * bbox[3], bbox, "box", region.result_id)


def _column_major(mask: np.ndarray) -> np.ndarray:
    """The same (H, W) bool mask stored column-major (what COCO RLE encodes), by OpenCV's fast transpose."""
    import cv2

    return cv2.transpose(np.ascontiguousarray(mask, dtype=bool).view(np.uint8)).T.view(bool)


def _polygon_area_bbox(segmentation: list[list[float]], height: int, width: int) -> tuple[float, list[float]]:
    """COCO's own ``area`` and ``bbox`` of polygon lists (pycocotools rasterisation, parts unioned)."""
    from pycocotools import mask as mask_utils

    polygons = [polygon for polygon in segmentation if len(polygon) >= 6]
    if not polygons:
        return 0.0, [0.0, 0.0, 0.0, 0.0]
    merged = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return float(mask_utils.area(merged)), [float(v) for v in mask_utils.toBbox(merged)]
