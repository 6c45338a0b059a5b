"""COCO run-length encoding of masks (pycocotools), JSON ready.

COCO RLE runs over the mask in **column-major (Fortran) order**, starting with a run of zeros; ``counts`` is the
compressed string form (LEB128-like ASCII) and ``size`` is ``[height, width]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _mask_utils() -> Any:
    from pycocotools import mask as mask_utils

    return mask_utils


def as_pycocotools(rle: dict[str, Any]) -> dict[str, Any]:
    """A COCO RLE dict (compressed ``str``/``bytes`` counts, or uncompressed ``list`` counts) as pycocotools wants."""
    try:
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"COCO RLE must be a dict with size [height, width] and counts, got {rle!r:.80}") from error
    if len(size) != 2:
        raise ValueError(f"COCO RLE size must be [height, width], got {size}")
    if isinstance(counts, list):
        return _mask_utils().frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(f"COCO RLE counts must be a str, bytes or list, got {type(counts).__name__}")
    return {"size": size, "counts": counts}


def mask_to_coco_rle(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask (nonzero = foreground) -> ``{"size": [H, W], "counts": str}`` (compressed, JSON ready)."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    encoded = _mask_utils().encode(np.asfortranarray(array != 0, dtype=np.uint8))
    return {"size": [int(array.shape[0]), int(array.shape[1])], "counts": encoded["counts"].decode("ascii")}


def coco_rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed or uncompressed counts) -> (H, W) bool mask. Mirror of :func:`mask_to_coco_rle`."""
    return _mask_utils().decode(as_pycocotools(rle)).astype(bool)


def coco_rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of a COCO RLE (what COCO's ``area`` of a mask annotation must be)."""
    return int(_mask_utils().area(as_pycocotools(rle)))


def coco_rle_bbox(rle: dict[str, Any]) -> list[float]:
    """COCO ``bbox`` ``[x, y, width, height]`` (pixel edges) of a COCO RLE; ``[0, 0, 0, 0]`` when empty."""
    return [float(v) for v in _mask_utils().toBbox(as_pycocotools(rle))]
