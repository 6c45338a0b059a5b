"""Polygons from masks and back, with holes and several parts; Label Studio percent points.

Coordinate convention: **pixel corners**. A point is ``(x, y)`` in pixels of the image as displayed (after EXIF
orientation) where pixel ``(row r, column c)`` covers ``[c, c + 1) x [r, r + 1)``, so its centre is
``(c + 0.5, r + 0.5)``; Label Studio's percent points use the same continuous frame (``x% = 100 * x / width``).

:func:`mask_to_polygons` traces the **centres of the boundary pixels** (OpenCV ``findContours``), so a polygon lies up
to half a pixel inside the pixel-edge outline of the mask. :func:`polygons_to_mask` is its inverse: it fills, with the
even-odd rule, every pixel whose centre is inside the polygons *or on their edges* (OpenCV ``fillPoly``), so
``polygons_to_mask(mask_to_polygons(mask, tolerance_px=0, min_area_px=0))`` gives back ``mask`` exactly, apart
from parts of one or two pixels (fewer than 3 points). 1-pixel-wide lines survive as zero-area polygons, because the
rasteriser fills the pixels on polygon edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: Fixed-point fraction bits used when rasterising float vertices with OpenCV.
_SHIFT_BITS = 8
#: Which outline :func:`mask_to_polygon_parts` traces: boundary pixel centres, or just inside the pixel edges.
Outline = Literal["centres", "edges"]
#: Points compared at once when looking for the closest pair of two rings (bounds the distance matrix's memory).
_CLOSEST_PAIR_CHUNK = 1024


@dataclass(frozen=True)
class PolygonPart:
    """One connected part of a mask: its outer boundary and the boundaries of its holes.

    Each polygon is (N, 2) float64 XY pixel-corner coordinates (see the module docstring), N >= 3, not closed
    (the last point is not a copy of the first).
    """

    outer: np.ndarray
    holes: tuple[np.ndarray, ...] = field(default_factory=tuple)


def _enclosed_pixels(contour: np.ndarray, *, is_hole: bool) -> float:
    """Pixels a traced contour encloses, by Pick's theorem on the unsimplified contour (centre coordinates).

    An outer contour runs over the part's own boundary pixels (count = area + boundary / 2 + 1); a hole's contour
    runs over the object pixels around the hole (the hole's pixels are the interior: area - boundary / 2 + 1).
    """
    import cv2

    area = abs(float(cv2.contourArea(contour)))
    boundary = len(contour)
    return area - boundary / 2 + 1 if is_hole else area + boundary / 2 + 1


def mask_to_polygon_parts(
    mask: np.ndarray, *, tolerance_px: float = 1.5, min_area_px: float = 4, outline: Outline = "centres"
) -> list[PolygonPart]:
    """Trace a (H, W) bool mask (nonzero = foreground) into parts, each an outer polygon and its holes.

    ``tolerance_px``: Douglas-Peucker simplification tolerance in pixels (``cv2.approxPolyDP``); 0 keeps every
    boundary pixel's centre (``CHAIN_APPROX_NONE``; straight runs are not merged). ``min_area_px``: parts enclosing
    fewer pixels are dropped and holes of fewer pixels are filled. A contour that simplifies to fewer than 3 points
    keeps its traced (unsimplified) outline; one with fewer than 3 points even then is dropped (a part without a
    usable outer polygon is dropped with its holes).
    Parts come in OpenCV's order (bottom-up scan), holes inside their part. An island inside a hole is a part
    of its own.

    ``outline``: ``"centres"`` traces the centres of the boundary pixels (see the module docstring).
    ``"edges"`` traces the mask upsampled 2x, so every point lies a quarter pixel inside the pixel-edge outline
    (``x = c + 0.25`` or ``c + 0.75``): pycocotools' polygon rasteriser (pixel edges) and a rasteriser that truncates
    vertices to pixel indices (Ultralytics' ``polygon2mask``) both give back the mask's own pixels, and a part of
    one pixel is still a valid polygon (a 0.5 x 0.5 px square). Straight runs are always merged in this mode.
    """
    import cv2

    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    if tolerance_px < 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    if array.size == 0:
        return []
    # Trace only the bounding box of the foreground (objects are usually small next to the image), then shift back.
    rows = np.flatnonzero(array.any(axis=1))
    if rows.size == 0:
        return []
    columns = np.flatnonzero(array[rows[0] : rows[-1] + 1].any(axis=0))
    if outline not in ("centres", "edges"):
        raise ValueError(f"outline must be 'centres' or 'edges', got {outline!r}")
    top, left = int(rows[0]), int(columns[0])
    crop = array[top : rows[-1] + 1, left : columns[-1] + 1]
    binary = np.ascontiguousarray(crop != 0, dtype=np.uint8)
    scale = 2 if outline == "edges" else 1  # traced pixels per image pixel, along each axis
    if scale > 1:
        binary = np.ascontiguousarray(binary.repeat(scale, axis=0).repeat(scale, axis=1))
    contours, hierarchy = cv2.findContours(
        binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE, offset=(left * scale, top * scale)
    )
    if hierarchy is None:
        return []
    links = hierarchy.reshape(-1, 4)  # next, previous, first child, parent

    def simplified(contour: np.ndarray, is_hole: bool) -> np.ndarray | None:
        if _enclosed_pixels(contour, is_hole=is_hole) < min_area_px * scale * scale:
            return None
        if tolerance_px > 0 or scale > 1:
            approximated = cv2.approxPolyDP(contour, tolerance_px * scale, closed=True)
            if len(approximated) >= 3:  # a small part that simplifies away keeps its traced outline
                contour = approximated
        points = (contour.reshape(-1, 2).astype(np.float64) + 0.5) / scale
        return points if len(points) >= 3 else None

    parts = []
    for index, contour in enumerate(contours):
        if links[index, 3] != -1:
            continue  # a hole, handled with its parent
        outer = simplified(contour, is_hole=False)
        if outer is None:
            continue
        holes = []
        child = int(links[index, 2])
        while child != -1:
            hole = simplified(contours[child], is_hole=True)
            if hole is not None:
                holes.append(hole)
            child = int(links[child, 0])
        parts.append(PolygonPart(outer=outer, holes=tuple(holes)))
    return parts


def mask_to_polygons(mask: np.ndarray, *, tolerance_px: float = 1.5, min_area_px: float = 4) -> list[np.ndarray]:
    """Trace a (H, W) bool mask into polygons: outer boundaries **and** holes, each (N, 2) float64 XY pixel corners.

    A multi-part object gives several outer polygons. Rasterise the list with :func:`polygons_to_mask` (even-odd
    rule, so holes stay holes). See :func:`mask_to_polygon_parts` for ``tolerance_px`` and ``min_area_px``.
    """
    polygons: list[np.ndarray] = []
    for part in mask_to_polygon_parts(mask, tolerance_px=tolerance_px, min_area_px=min_area_px):
        polygons.append(part.outer)
        polygons.extend(part.holes)
    return polygons


def polygons_to_mask(polygons: list[np.ndarray] | tuple[np.ndarray, ...], height: int, width: int) -> np.ndarray:
    """Rasterise polygons ((N, 2) XY pixel corners each) into a (H, W) bool mask with the even-odd rule.

    A pixel is set when its centre lies inside an odd number of polygons or on a polygon edge, which inverts
    :func:`mask_to_polygons`. Polygons with fewer than 3 points are ignored; points outside the image are clipped
    by the rasteriser.
    """
    import cv2

    canvas = np.zeros((height, width), dtype=np.uint8)
    scale = 1 << _SHIFT_BITS
    fixed = []
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            continue
        fixed.append(np.round((points - 0.5) * scale).astype(np.int32))
    if fixed:
        cv2.fillPoly(canvas, fixed, 1, lineType=cv2.LINE_8, shift=_SHIFT_BITS)
    return canvas.astype(bool)


def polygon_to_percent(polygon: np.ndarray, width: int, height: int) -> list[list[float]]:
    """(N, 2) XY pixel corners -> Label Studio ``points``: ``[[x%, y%], ...]`` in percent of width and height."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    scaled = points * (100.0 / np.array([width, height], dtype=np.float64))
    return scaled.tolist()


def polygon_from_percent(points: list[list[float]] | np.ndarray, width: int, height: int) -> np.ndarray:
    """Label Studio ``points`` ``[[x%, y%], ...]`` -> (N, 2) float64 XY pixel corners. Mirror of the above."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"polygon points must be a list of [x, y] pairs, got shape {array.shape}")
    return array * (np.array([width, height], dtype=np.float64) / 100.0)


def _closest_pair(ring: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """Indices ``(i, j)`` of the closest vertices ``ring[i]``, ``other[j]`` of two (N, 2) / (M, 2) point arrays."""
    best = (np.inf, 0, 0)
    for start in range(0, len(other), _CLOSEST_PAIR_CHUNK):
        chunk = other[start : start + _CLOSEST_PAIR_CHUNK]
        distances = np.abs(ring[:, None, :] - chunk[None, :, :]).max(axis=-1)
        flat = int(distances.argmin())
        i, j = divmod(flat, len(chunk))
        if distances[i, j] < best[0]:
            best = (float(distances[i, j]), i, start + j)
    return best[1], best[2]


def bridge_rings(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """One ring from two, joined by a zero-width cut between their closest vertices.

    The result walks ``ring`` up to vertex ``i``, jumps to ``other``'s closest vertex ``j``, walks all of ``other``
    back to ``j``, returns along the same cut to ``ring[i]`` and finishes ``ring``: (N + M + 2, 2) points. The cut is
    traversed twice in opposite directions, so an even-odd (or crossing-count) rasteriser fills the same pixels as it
    would for the two rings given separately: a hole stays a hole (``other`` inside ``ring``), a detached part stays
    filled (``other`` outside ``ring``), apart from the pixels the cut's line touches when the rasteriser also fills
    polygon edges (OpenCV's ``fillPoly``). This is how Ultralytics' own ``merge_multi_segment`` joins segments.
    """
    ring = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    other = np.asarray(other, dtype=np.float64).reshape(-1, 2)
    i, j = _closest_pair(ring, other)
    return np.concatenate([ring[: i + 1], other[j:], other[: j + 1], ring[i:]])


def part_ring(part: PolygonPart) -> np.ndarray:
    """A part as one ring: its outer polygon with every hole joined in by a zero-width cut (:func:`bridge_rings`)."""
    ring = part.outer
    for hole in part.holes:
        ring = bridge_rings(ring, hole)
    return ring


def single_ring(parts: list[PolygonPart]) -> np.ndarray | None:
    """All parts of one object (holes included) as one ring, for formats with one polygon per object (YOLO).

    Parts are joined along a minimum spanning tree of their closest-vertex distances (Prim's order: the largest part
    first, then always the part nearest to the ring built so far, cut in at its closest vertex), so the cuts are as
    short as any joining of these parts can make them. ``None`` when there are no parts.
    """
    import cv2

    rings = [part_ring(part) for part in parts]
    if not rings:
        return None
    areas = [abs(float(cv2.contourArea(part.outer.astype(np.float32)))) for part in parts]
    first = max(range(len(rings)), key=lambda index: areas[index])
    joined = rings[first]
    remaining = [index for index in range(len(rings)) if index != first]
    # squared distance of each remaining part to the nearest part already joined
    nearest = {index: _squared_distance(rings[first], rings[index]) for index in remaining}
    while remaining:
        chosen = min(remaining, key=lambda index: nearest[index])
        remaining.remove(chosen)
        joined = bridge_rings(joined, rings[chosen])
        for index in remaining:
            nearest[index] = min(nearest[index], _squared_distance(rings[chosen], rings[index]))
    return joined


def _squared_distance(ring: np.ndarray, other: np.ndarray) -> float:
    """Squared distance between the closest vertices of two (N, 2) / (M, 2) point arrays."""
    i, j = _closest_pair(ring, other)
    return float(((ring[i] - other[j]) ** 2).sum())
