"""Masks the format round-trip tests share: holes, an island in a hole, parts, image borders, one pixel, 2x3 px."""

from __future__ import annotations

import numpy as np


def _ring(height: int, width: int, cy: float, cx: float, r_out: float, r_in: float) -> np.ndarray:
    rows, columns = np.ogrid[:height, :width]
    d2 = (rows - cy) ** 2 + (columns - cx) ** 2
    return (d2 < r_out**2) & (d2 >= r_in**2)


def shape_masks(height: int = 48, width: int = 64) -> dict[str, np.ndarray]:
    """name -> (H, W) bool mask."""
    masks = {"ring": _ring(height, width, 24, 30, 18, 7)}
    masks["island-in-hole"] = masks["ring"] | _ring(height, width, 24, 30, 3, 0)
    two = np.zeros((height, width), bool)
    two[2:12, 3:20] = True
    two[30:45, 40:60] = True
    masks["two-parts"] = two
    border = np.zeros((height, width), bool)
    border[:, :5] = True
    border[height - 3 :, :] = True
    masks["touches-borders"] = border
    full = np.ones((height, width), bool)
    full[10:20, 10:20] = False
    masks["whole-image-with-hole"] = full
    one = np.zeros((height, width), bool)
    one[7, 9] = True
    masks["one-pixel"] = one
    tiny = np.zeros((height, width), bool)
    tiny[40:42, 30:33] = True
    masks["2x3-px"] = tiny
    line = np.zeros((height, width), bool)
    line[5:40, 50] = True
    masks["1-px-line"] = line
    diagonal = np.eye(height, width, dtype=bool)
    masks["diagonal-pixels"] = diagonal
    return masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
