"""COCO polygon segmentation: a mask as flat polygon lists ``[[x1, y1, x2, y2, ...], ...]``, holes and parts kept.

Every connected part of a mask is one polygon; its holes are joined into it by zero-width cuts
(:func:`~batchlabel.formats.polygon.part_ring`), so tools that read only polygons (and rasterise them the way
pycocotools does, even-odd with pixel-edge coordinates) get the holes back. Points lie a quarter pixel inside the
pixel-edge outline (``outline="edges"``), which pycocotools' ``frPyObjects`` rasterises to the mask's own pixels.
"""

from __future__ import annotations

import numpy as np

from batchlabel.formats.polygon import mask_to_polygon_parts, part_ring

#: Decimals kept in the JSON (traced points are multiples of 0.25 px; simplified ones stay on those points).
COORDINATE_DECIMALS = 2


def rings_to_coco_polygons(rings: list[np.ndarray]) -> list[list[float]]:
    """Rings ((N, 2) XY pixel corners; a part with its holes cut in, :func:`part_ring`) -> COCO polygon lists."""
    return [np.round(ring, COORDINATE_DECIMALS).reshape(-1).tolist() for ring in rings]


def coco_polygons_json(rings: list[np.ndarray], *, limit: float) -> str:
    """The compact JSON text of :func:`rings_to_coco_polygons` (what ``json.dumps`` with separators ``,`` and ``:``
    writes), fast for points on the quarter-pixel grid within ``[0, limit]`` (traced outlines)."""
    import json

    from batchlabel.formats.grid_text import quarter_steps, step_texts

    texts = []
    for ring in rings:
        steps = quarter_steps(ring.reshape(-1), limit)
        if steps is None:
            return json.dumps(rings_to_coco_polygons(rings), separators=(",", ":"))
        texts.append("[" + ",".join(step_texts(steps).tolist()) + "]")
    return "[" + ",".join(texts) + "]"


def mask_to_coco_polygons(mask: np.ndarray, *, tolerance_px: float = 0.25) -> list[list[float]]:
    """(H, W) bool mask -> COCO polygon lists (``[]`` for an empty mask), one per part with its holes cut in.

    ``tolerance_px``: Douglas-Peucker, pixels."""
    parts = mask_to_polygon_parts(mask, tolerance_px=tolerance_px, min_area_px=0, outline="edges")
    return rings_to_coco_polygons([part_ring(part) for part in parts])


def coco_polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Mirror of :func:`mask_to_coco_polygons`: pycocotools' rasterisation of the polygons, parts unioned."""
    from pycocotools import mask as mask_utils

    usable = [polygon for polygon in polygons if len(polygon) >= 6]
    if not usable:
        return np.zeros((height, width), dtype=bool)
    merged = mask_utils.merge(mask_utils.frPyObjects(usable, height, width))
    return mask_utils.decode(merged).astype(bool)
