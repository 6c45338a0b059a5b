"""COCO polygon segmentation: a mask as flat polygon lists ``[[x1, y1, x2, y2, ...], ...]``, holes and parts kept.

Every connected part of a mask is one polygon; its holes are joined into it by zero-width cuts
(:func:`~batchlabel.infer.codecs.polygon.part_ring`), so tools that read only polygons (and rasterise them the way
pycocotools does, even-odd with pixel-edge coordinates) get the holes back. Points lie a quarter pixel inside the
pixel-edge outline (``outline="edges"``), which pycocotools' ``frPyObjects`` rasterises to the mask's own pixels.
"""

from __future__ import annotations

import numpy as np

from batchlabel.infer.codecs.polygon import PolygonPart, mask_to_polygon_parts, part_ring

#: Decimals kept in the JSON (traced points are multiples of 0.25 px; simplified ones stay on those points).
COORDINATE_DECIMALS = 2


def parts_to_coco_polygons(parts: list[PolygonPart]) -> list[list[float]]:
    """Polygon parts (XY pixel corners) -> COCO ``segmentation`` polygon lists, one per part with its holes cut in."""
    return [np.round(part_ring(part), COORDINATE_DECIMALS).reshape(-1).tolist() for part in parts]


def mask_to_coco_polygons(mask: np.ndarray, *, tolerance_px: float = 0.25) -> list[list[float]]:
    """(H, W) bool mask -> COCO polygon lists (``[]`` for an empty mask). ``tolerance_px``: Douglas-Peucker, pixels."""
    return parts_to_coco_polygons(mask_to_polygon_parts(mask, tolerance_px=tolerance_px, min_area_px=0,
                                                        outline="edges"))


def coco_polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Mirror of :func:`mask_to_coco_polygons`: pycocotools' rasterisation of the polygons, parts unioned."""
    from pycocotools import mask as mask_utils

    usable = [polygon for polygon in polygons if len(polygon) >= 6]
    if not usable:
        return np.zeros((height, width), dtype=bool)
    merged = mask_utils.merge(mask_utils.frPyObjects(usable, height, width))
    return mask_utils.decode(merged).astype(bool)
