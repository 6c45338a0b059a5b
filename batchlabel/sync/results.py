"""The Label Studio result format: build result items from masks and boxes, and parse them back.

Every item batchlabel builds has ``id``, ``from_name``, ``to_name``, ``type``, ``original_width``,
``original_height``, ``image_rotation: 0``, ``value``, ``readonly: false`` and ``score`` when one is given.
Coordinates in ``value`` are **percent** of ``original_width`` / ``original_height``, the size of the image as Label
Studio displays it (after EXIF orientation), x to the right and y down. Masks are (H, W) bool arrays in that space.

Formats (see ``shared/docs/label-studio.md``):

- ``brushlabels``: ``{format: "rle", rle: [bytes], brushlabels: [label]}``; the exact format: holes and several
  parts are kept pixel for pixel.
- ``polygonlabels``: ``{points: [[x%, y%], ...], closed: true, polygonlabels: [label]}``. A Label Studio polygon has
  no holes: :func:`polygon_results` gives one item per outer boundary and **drops holes**. Use brush for exact masks.
- ``rectanglelabels``: ``{x, y, width, height, rotation: 0, rectanglelabels: [label]}`` in percent.
- ``keypointlabels``: ``{x, y, width, keypointlabels: [label]}`` and ``is_positive`` on the item (smart clicks).

The items built for one object share a group id: their ids are ``"<group>_<kind>"`` (``_brush``, ``_rect``,
``_poly0``, ``_poly1``...). :func:`result_group_id` reads it back.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from batchlabel.formats.box import BoxXYXY, box_from_percent, box_to_percent, mask_to_box_xyxy
from batchlabel.formats.brush import brush_rle_to_mask, mask_to_brush_rle
from batchlabel.formats.polygon import (
    mask_to_polygon_parts,
    polygon_from_percent,
    polygon_to_percent,
    polygons_to_mask,
)
from batchlabel.sync.label_config import ControlNames

logger = logging.getLogger(__name__)

BRUSH = "brushlabels"
POLYGON = "polygonlabels"
RECTANGLE = "rectanglelabels"
KEYPOINT = "keypointlabels"

#: The ``preannotate.outputs`` kinds :func:`object_results` understands.
OUTPUT_KINDS = ("brush", "polygon", "rectangle")


class ResultFormatError(ValueError):
    """A Label Studio result item that batchlabel cannot read; the message names the item and what is wrong."""


def new_group_id() -> str:
    """A fresh 10-character id for one object's result items (Label Studio's own ids are 10 characters)."""
    return uuid.uuid4().hex[:10]


def result_group_id(item: Mapping[str, Any]) -> str:
    """The group id of an item built here (the part of ``id`` before the last ``_``), else its whole ``id``."""
    result_id = str(item.get("id", ""))
    return result_id.rsplit("_", 1)[0] if "_" in result_id else result_id


def _item(
    *,
    result_id: str | None,
    result_type: str,
    from_name: str,
    to_name: str,
    height: int,
    width: int,
    value: dict[str, Any],
    score: float | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": result_id or new_group_id(),
        "from_name": from_name,
        "to_name": to_name,
        "type": result_type,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
        "readonly": False,
    }
    if score is not None:
        item["score"] = float(score)
    return item


def brush_result(
    mask: np.ndarray,
    *,
    label: str,
    from_name: str,
    to_name: str,
    score: float | None = None,
    result_id: str | None = None,
) -> dict[str, Any]:
    """A ``brushlabels`` item for a (H, W) bool mask (exact: holes and parts kept)."""
    height, width = np.shape(mask)
    value = {"format": "rle", "rle": mask_to_brush_rle(mask), BRUSH: [label]}
    return _item(
        result_id=result_id,
        result_type=BRUSH,
        from_name=from_name,
        to_name=to_name,
        height=height,
        width=width,
        value=value,
        score=score,
    )


def polygon_results(
    mask: np.ndarray,
    *,
    label: str,
    from_name: str,
    to_name: str,
    tolerance_px: float,
    score: float | None = None,
    group_id: str | None = None,
    min_area_px: float = 4,
) -> list[dict[str, Any]]:
    """``polygonlabels`` items for a (H, W) bool mask: one per outer boundary (part); holes are dropped.

    ``tolerance_px`` is the simplification tolerance in pixels; parts under ``min_area_px`` pixels are dropped.
    Item ids are ``"<group_id>_poly<i>"``. An empty mask gives ``[]``.
    """
    height, width = np.shape(mask)
    group = group_id or new_group_id()
    parts = mask_to_polygon_parts(mask, tolerance_px=tolerance_px, min_area_px=min_area_px)
    holes = sum(len(part.holes) for part in parts)
    if holes:
        logger.debug("polygon results drop %d hole(s) (Label Studio polygons have none; brush keeps them)", holes)
    return [
        _item(
            result_id=f"{group}_poly{index}",
            result_type=POLYGON,
            from_name=from_name,
            to_name=to_name,
            height=height,
            width=width,
            value={"points": polygon_to_percent(part.outer, width, height), "closed": True, POLYGON: [label]},
            score=score,
        )
        for index, part in enumerate(parts)
    ]


def rectangle_result(
    box_xyxy: BoxXYXY,
    *,
    label: str,
    from_name: str,
    to_name: str,
    image_size: tuple[int, int],
    score: float | None = None,
    result_id: str | None = None,
) -> dict[str, Any]:
    """A ``rectanglelabels`` item for a pixel-edge XYXY box on an image of ``image_size`` (height, width)."""
    height, width = image_size
    value: dict[str, Any] = {**box_to_percent(box_xyxy, width, height), "rotation": 0, RECTANGLE: [label]}
    return _item(
        result_id=result_id,
        result_type=RECTANGLE,
        from_name=from_name,
        to_name=to_name,
        height=height,
        width=width,
        value=value,
        score=score,
    )


def object_results(
    mask: np.ndarray,
    *,
    label: str,
    outputs: Sequence[str],
    names: ControlNames,
    score: float | None = None,
    polygon_tolerance_px: float = 1.5,
    group_id: str | None = None,
    box_xyxy: BoxXYXY | None = None,
) -> list[dict[str, Any]]:
    """The result items ``preannotate.outputs`` asks for, for one object's (H, W) bool mask.

    The rectangle is ``box_xyxy`` (XYXY pixels, e.g. a detector's box) when given, else the mask's bounding box.

    ``outputs`` holds ``"brush"``, ``"polygon"`` and/or ``"rectangle"``; items come in that order and share one
    group id. An empty mask gives ``[]`` (Label Studio rejects empty brush regions and zero-size boxes). Raises
    ``ValueError`` for an unknown output kind or one whose tool the labeling config lacks.
    """
    unknown = [kind for kind in outputs if kind not in OUTPUT_KINDS]
    if unknown:
        raise ValueError(f"unknown pre-annotation output(s) {unknown}; expected some of {list(OUTPUT_KINDS)}")
    tools = {"brush": names.brush, "polygon": names.polygon, "rectangle": names.rectangle}
    missing = [kind for kind in outputs if tools[kind] is None]
    if missing:
        raise ValueError(
            f"preannotate.outputs asks for {missing} but the labeling config has no such tool "
            "(BrushLabels / PolygonLabels / RectangleLabels)"
        )
    mask_box = mask_to_box_xyxy(mask)
    if mask_box is None:
        return []
    box = mask_box if box_xyxy is None else box_xyxy
    group = group_id or new_group_id()
    height, width = np.shape(mask)
    items: list[dict[str, Any]] = []
    for kind in outputs:
        from_name = str(tools[kind])  # not None: checked above
        if kind == "brush":
            items.append(
                brush_result(
                    mask, label=label, from_name=from_name, to_name=names.image, score=score,
                    result_id=f"{group}_brush",
                )
            )
        elif kind == "polygon":
            items.extend(
                polygon_results(
                    mask, label=label, from_name=from_name, to_name=names.image,
                    tolerance_px=polygon_tolerance_px, score=score, group_id=group,
                )
            )
        else:
            items.append(
                rectangle_result(
                    box, label=label, from_name=from_name, to_name=names.image, image_size=(height, width),
                    score=score, result_id=f"{group}_rect",
                )
            )
    return items


# --- parsers -------------------------------------------------------------------------------------------------------


def _describe(item: Any) -> str:
    if isinstance(item, Mapping):
        return f"result item {item.get('id', '<no id>')!r} ({item.get('type', '<no type>')})"
    return "result item"


def _check_item(item: Any, expected_types: Sequence[str]) -> tuple[str, dict[str, Any], int, int]:
    """Validate the common fields; returns (type, value, height, width)."""
    if not isinstance(item, Mapping):
        raise ResultFormatError(f"a result item must be a JSON object, got {type(item).__name__}")
    what = _describe(item)
    result_type = item.get("type")
    if result_type not in expected_types:
        raise ResultFormatError(
            f"{what}: unknown or unexpected type {result_type!r}; expected one of {list(expected_types)}"
        )
    size = []
    for key in ("original_width", "original_height"):
        raw = item.get(key)
        if raw is None:
            raise ResultFormatError(f"{what}: missing {key}")
        if not _finite_number(raw) or raw <= 0 or int(raw) != raw:
            raise ResultFormatError(f"{what}: {key} must be a positive integer, got {raw!r}")
        size.append(int(raw))
    rotation = item.get("image_rotation", 0) or 0
    if rotation != 0:
        raise ResultFormatError(f"{what}: image_rotation={rotation} is not supported yet (only 0)")
    value = item.get("value")
    if not isinstance(value, Mapping):
        raise ResultFormatError(f"{what}: missing value object")
    return str(result_type), dict(value), size[1], size[0]


def _label(what: str, value: Mapping[str, Any], result_type: str) -> str:
    labels = value.get(result_type)
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise ResultFormatError(f"{what}: value.{result_type} must be a list of exactly one label, got {labels!r}")
    return labels[0]


def _finite_number(raw: object) -> bool:
    """An int or float (not a bool) that is finite as a float: ``1e400``-sized ints and NaN/inf are not."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return False
    try:
        return math.isfinite(raw)
    except OverflowError:  # an int too large for a float
        return False


def _number(what: str, value: Mapping[str, Any], key: str) -> float:
    raw = value.get(key)
    if not _finite_number(raw):
        raise ResultFormatError(f"{what}: value.{key} must be a number, got {str(raw)[:40]!r}")
    return float(raw)  # type: ignore[arg-type]  # _finite_number checked it


def parse_result_mask(item: Mapping[str, Any]) -> tuple[str, np.ndarray]:
    """A ``brushlabels`` or ``polygonlabels`` item -> (label, (H, W) bool mask at original_height x original_width).

    Polygons are rasterised with :func:`~batchlabel.formats.polygon.polygons_to_mask` (pixels whose centre is
    inside or on an edge). Raises :class:`ResultFormatError` naming what is wrong.
    """
    result_type, value, height, width = _check_item(item, (BRUSH, POLYGON))
    what = _describe(item)
    label = _label(what, value, result_type)
    if result_type == BRUSH:
        if value.get("format", "rle") != "rle":
            raise ResultFormatError(f"{what}: brush format {value.get('format')!r} is not supported (only 'rle')")
        rle = value.get("rle")
        if not isinstance(rle, list) or not rle:
            raise ResultFormatError(f"{what}: value.rle must be a non-empty list of bytes")
        try:
            return label, brush_rle_to_mask(rle, height, width)
        except ValueError as error:
            raise ResultFormatError(f"{what}: bad rle: {error}") from error
    points = value.get("points")
    try:
        polygon = polygon_from_percent(points, width, height)  # type: ignore[arg-type]
    except (ValueError, TypeError) as error:
        raise ResultFormatError(f"{what}: bad points: {error}") from error
    if len(polygon) < 3 or not np.isfinite(polygon).all():
        raise ResultFormatError(f"{what}: a polygon needs at least 3 finite points, got {len(polygon)}")
    return label, polygons_to_mask([polygon], height, width)


def parse_rectangle(item: Mapping[str, Any]) -> tuple[str, BoxXYXY]:
    """A ``rectanglelabels`` item -> (label, pixel-edge XYXY box). Rotated rectangles raise ResultFormatError."""
    _, value, height, width = _check_item(item, (RECTANGLE,))
    what = _describe(item)
    label = _label(what, value, RECTANGLE)
    numbers = {key: _number(what, value, key) for key in ("x", "y", "width", "height")}
    rotation = value.get("rotation", 0) or 0
    if rotation != 0:
        raise ResultFormatError(f"{what}: rotated rectangles (rotation={rotation}) are not supported")
    return label, box_from_percent(numbers, width, height)


def parse_keypoint(item: Mapping[str, Any]) -> tuple[str, tuple[float, float], bool]:
    """A ``keypointlabels`` item -> (label, (x, y) pixel corners, is_positive). ``is_positive`` defaults to True."""
    _, value, height, width = _check_item(item, (KEYPOINT,))
    what = _describe(item)
    label = _label(what, value, KEYPOINT)
    x = _number(what, value, "x") * width / 100.0
    y = _number(what, value, "y") * height / 100.0
    is_positive = item.get("is_positive", True)
    if not isinstance(is_positive, bool):
        raise ResultFormatError(f"{what}: is_positive must be true or false, got {is_positive!r}")
    return label, (x, y), is_positive
