"""Boxes: from masks, between XYXY and XYWH, and Label Studio percent rectangles.

Convention: **pixel edges**. ``(x1, y1, x2, y2)`` floats in pixels of the image as displayed (after EXIF
orientation), where pixel ``(row r, column c)`` covers ``[c, c + 1) x [r, r + 1)``: a mask whose columns run from
``c0`` to ``c1`` inclusive has ``x1 = c0`` and ``x2 = c1 + 1`` (SAM's and COCO's convention). Label Studio rectangles
are ``{x, y, width, height}`` in percent of the image (top-left corner, x to the right, y down).
"""

from __future__ import annotations

import numpy as np

BoxXYXY = tuple[float, float, float, float]
BoxXYWH = tuple[float, float, float, float]


def mask_to_box_xyxy(mask: np.ndarray) -> BoxXYXY | None:
    """Tight pixel-edge box ``(x1, y1, x2, y2)`` of a (H, W) bool mask (nonzero = foreground); ``None`` if empty."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    columns = np.flatnonzero(array.any(axis=0))
    if columns.size == 0:
        return None
    rows = np.flatnonzero(array.any(axis=1))
    return (float(columns[0]), float(rows[0]), float(columns[-1] + 1), float(rows[-1] + 1))


def box_xyxy_to_mask(box_xyxy: BoxXYXY, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of the pixels whose centres lie inside a pixel-edge box. Mirror of :func:`mask_to_box_xyxy`."""
    x1, y1, x2, y2 = box_xyxy
    mask = np.zeros((height, width), dtype=bool)
    # Pixel c is inside when x1 <= c + 0.5 < x2.
    c0, c1 = max(int(np.ceil(x1 - 0.5)), 0), min(int(np.ceil(x2 - 0.5)), width)
    r0, r1 = max(int(np.ceil(y1 - 0.5)), 0), min(int(np.ceil(y2 - 0.5)), height)
    if c1 > c0 and r1 > r0:
        mask[r0:r1, c0:c1] = True
    return mask


def box_xywh_from_xyxy(box_xyxy: BoxXYXY) -> BoxXYWH:
    """``(x1, y1, x2, y2)`` -> ``(x, y, width, height)``, pixels (COCO ``bbox`` order)."""
    x1, y1, x2, y2 = box_xyxy
    return (float(x1), float(y1), float(x2 - x1), float(y2 - y1))


def box_xyxy_from_xywh(box_xywh: BoxXYWH) -> BoxXYXY:
    """``(x, y, width, height)`` -> ``(x1, y1, x2, y2)``, pixels. Mirror of :func:`box_xywh_from_xyxy`."""
    x, y, w, h = box_xywh
    return (float(x), float(y), float(x + w), float(y + h))


def box_to_percent(box_xyxy: BoxXYXY, width: int, height: int) -> dict[str, float]:
    """Pixel-edge ``(x1, y1, x2, y2)`` -> Label Studio ``{"x", "y", "width", "height"}`` in percent of the image."""
    x1, y1, x2, y2 = box_xyxy
    return {
        "x": 100.0 * x1 / width,
        "y": 100.0 * y1 / height,
        "width": 100.0 * (x2 - x1) / width,
        "height": 100.0 * (y2 - y1) / height,
    }


def box_from_percent(value: dict[str, float], width: int, height: int) -> BoxXYXY:
    """Label Studio ``{"x", "y", "width", "height"}`` (percent) -> pixel-edge ``(x1, y1, x2, y2)``. Mirror of the above.

    Raises ``KeyError`` naming a missing key.
    """
    x1 = float(value["x"]) * width / 100.0
    y1 = float(value["y"]) * height / 100.0
    return (x1, y1, x1 + float(value["width"]) * width / 100.0, y1 + float(value["height"]) * height / 100.0)
