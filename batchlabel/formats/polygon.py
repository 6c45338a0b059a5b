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
from typing import Any, Literal

import numpy as np

#: Fixed-point fraction bits used when rasterising float vertices with OpenCV.
_SHIFT_BITS = 8
#: Which outline :func:`mask_to_polygon_parts` traces: boundary pixel centres, or just inside the pixel edges.
Outline = Literal["centres", "edges"]
#: Point pairs compared at once when joining rings (bounds the distance matrices' memory: a few bytes each).
_DISTANCE_BLOCK = 1 << 20
#: :func:`join_rings` builds a spanning tree of at most this many rings (more are noise: see ``_join_many``).
MAX_TREE_RINGS = 256


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
    # every boundary pixel is needed to count enclosed pixels (min_area_px) and, tracing centres, to keep a thin line
    # (its simplified outline has 2 points); tracing edges (parts at least 2 x 2) the straight runs are merged at once
    keep_every_point = min_area_px > 0 or scale == 1
    chain = cv2.CHAIN_APPROX_NONE if keep_every_point else cv2.CHAIN_APPROX_SIMPLE
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, chain, offset=(left * scale, top * scale))
    if hierarchy is None:
        return []
    links = hierarchy.reshape(-1, 4)  # next, previous, first child, parent

    def simplified(contour: np.ndarray, is_hole: bool) -> np.ndarray | None:
        if min_area_px > 0 and _enclosed_pixels(contour, is_hole=is_hole) < min_area_px * scale * scale:
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


def part_pixel_counts(mask: np.ndarray, parts: list[PolygonPart]) -> list[int]:
    """The number of mask pixels of each part (its own pixels: holes excluded, islands in them not counted), for parts
    traced from ``mask`` by :func:`mask_to_polygon_parts` (8-connected components, as ``findContours`` traces them).
    """
    import cv2

    rows = np.flatnonzero(np.asarray(mask).any(axis=1))
    if rows.size == 0 or not parts:
        return [0] * len(parts)
    columns = np.flatnonzero(np.asarray(mask)[rows[0] : rows[-1] + 1].any(axis=0))
    top, left = int(rows[0]), int(columns[0])
    crop = np.ascontiguousarray(np.asarray(mask)[top : rows[-1] + 1, left : columns[-1] + 1] != 0, dtype=np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    counts = []
    for part in parts:
        # every outline point lies inside (edges) or on the centre of (centres) one of the part's own pixels
        column, row = np.floor(part.outer[0]).astype(int)
        label = labels[min(max(row - top, 0), crop.shape[0] - 1), min(max(column - left, 0), crop.shape[1] - 1)]
        counts.append(int(stats[label, cv2.CC_STAT_AREA]) if label else 0)
    return counts


@dataclass(frozen=True)
class JoinedRing:
    """Rings joined into one by zero-width cuts (:func:`join_rings`).

    ``ring``: (N, 2) float64 XY pixel corners. ``left_out``: indices of the rings not joined, because the cut to them
    would have drawn more background pixels than they cover (only when pixel counts were given).
    """

    ring: np.ndarray
    left_out: tuple[int, ...] = ()


def join_rings(
    rings: list[np.ndarray], *, part_pixels: list[int] | None = None, root: int | None = None
) -> JoinedRing | None:
    """Rings ((N, 2) each XY pixel corners, not closed) joined into one ring by zero-width cuts.

    Each cut is walked there and back, so an even-odd (or crossing-count) rasteriser fills what it fills for the rings
    given separately (a hole stays a hole, a detached part stays filled), apart from the pixels the cut's line
    touches when the rasteriser also fills polygon edges (OpenCV's ``fillPoly``, Ultralytics' ``polygon2mask``):
    ``d - 1`` background pixels for a cut between points whose pixels are ``d`` apart (Chebyshev distance), at most.
    Ultralytics' own ``merge_multi_segment`` joins segments the same way.

    The rings are joined along a minimum spanning tree of those distances (Prim's order from ``root``, by default the
    ring of most pixels, or of largest area): every ring is cut in at its point nearest to any point joined so far.
    With ``part_pixels`` (parts, whose cuts cross the background) a cut may end anywhere along a ring's edges (points
    are added there, on the edge, only where a cut ends); else (holes, whose cuts cross the part) at a vertex.

    ``part_pixels``: each ring's own pixel count (:func:`part_pixel_counts`); when given, a ring whose cut would draw
    more background pixels than it covers is left out (drawing it would lower the IoU with the mask), and listed in
    :attr:`JoinedRing.left_out`. ``None`` when there are no rings.

    Cost: O(K * P) for K rings of P edge points in all (a point per pixel of outline). Beyond
    :data:`MAX_TREE_RINGS` rings (noise: a mask's stray pixels or pinholes), parts beyond the largest
    :data:`MAX_TREE_RINGS` are left out and holes are cut straight to the ``root`` ring, in O(P * root points).
    """
    import cv2

    rings = [np.asarray(ring, dtype=np.float64).reshape(-1, 2) for ring in rings]
    if not rings:
        return None
    if root is None and part_pixels is not None:
        root = int(np.argmax(part_pixels))
    elif root is None:
        root = max(range(len(rings)), key=lambda k: abs(float(cv2.contourArea(rings[k].astype(np.float32)))))
    if len(rings) == 1:
        return JoinedRing(rings[0])
    # parts: a cut may end anywhere along an edge (its background pixels count); holes: their cuts cross the part's
    # own pixels, so their vertices will do (and cost less)
    dense = ([_densify(ring) for ring in rings] if part_pixels is not None
             else [(ring, np.ones(len(ring), dtype=bool)) for ring in rings])
    points = [ring_points for ring_points, _ in dense]
    if len(rings) == 2:  # the common case (a part and its hole, two parts), without the tree's bookkeeping
        return _join_two(dense, root, part_pixels)
    left_out: list[int] = []
    if len(rings) <= MAX_TREE_RINGS:
        attachments, left_out = _spanning_tree(points, part_pixels, root)
    elif part_pixels is not None:
        order = sorted(range(len(rings)), key=lambda k: (-part_pixels[k], k))
        kept = order[:MAX_TREE_RINGS]
        local, local_left_out = _spanning_tree([points[k] for k in kept], [part_pixels[k] for k in kept],
                                               kept.index(root))
        attachments = {kept[k]: (own, kept[parent], at) for k, (own, parent, at) in local.items()}
        left_out = sorted([kept[k] for k in local_left_out] + order[MAX_TREE_RINGS:])
    else:  # many holes, cut straight to the outer ring: anywhere along its edges, crossing few other holes
        dense[root] = _densify(rings[root])
        points[root] = dense[root][0]
        attachments = _star(points, root)
    return JoinedRing(_walk(dense, root, attachments), tuple(left_out))


def _join_two(
    dense: list[tuple[np.ndarray, np.ndarray]], root: int, part_pixels: list[int] | None
) -> JoinedRing:
    """:func:`join_rings` of two rings: the same ring :func:`_walk` makes of the one cut between their nearest
    points (walk ``root`` to its point, all of the other from its point back to it, back along the cut, on)."""
    (first, first_own), (second, second_own) = dense[root], dense[1 - root]
    first_cells, second_cells = np.floor(first).astype(np.int32), np.floor(second).astype(np.int32)
    # for each point of the other ring its nearest point of ``root`` (the first on ties), then the other's nearest
    # point overall (the first on ties): the cut the spanning tree picks
    nearest_distance, nearest_point = _nearest_cells(second_cells, first_cells)
    j = int(nearest_distance.argmin())
    distance, i = int(nearest_distance[j]), int(nearest_point[j])
    if part_pixels is not None and max(distance - 1, 0) > part_pixels[1 - root]:
        return JoinedRing(first[first_own], (1 - root,))
    first_keep, second_keep = first_own.copy(), second_own.copy()
    first_keep[i] = second_keep[j] = True
    order = np.roll(np.arange(len(second)), -j)
    return JoinedRing(np.concatenate([
        first[: i + 1][first_keep[: i + 1]],
        second[order[second_keep[order]]],
        second[j : j + 1],  # the other ring closes where it started
        first[i : i + 1],  # back along the cut
        first[i + 1 :][first_keep[i + 1 :]],
    ]))


def _densify(ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ring with points added along every edge, one per pixel step (where a cut may end), and which points are
    the ring's own: ``((M, 2) points, (M,) bool)``. Added points lie on the edges, so the outline is unchanged."""
    following = np.roll(ring, -1, axis=0)
    steps = np.maximum(np.ceil(np.abs(following - ring).max(axis=1)).astype(np.int64), 1)
    offsets = np.concatenate([[0], np.cumsum(steps)[:-1]])
    edge = np.repeat(np.arange(len(ring)), steps)
    fraction = (np.arange(int(steps.sum())) - offsets[edge]) / steps[edge]
    points = ring[edge] + (following[edge] - ring[edge]) * fraction[:, None]
    return points, fraction == 0


def _spanning_tree(
    rings: list[np.ndarray], part_pixels: list[int] | None, root: int
) -> tuple[dict[int, tuple[int, int, int]], list[int]]:
    """Prim's minimum spanning tree of the rings under the Chebyshev distance of their points' pixels.

    Returns ``{ring: (its point, parent ring, the parent's point)}`` for every ring joined after ``root``, and the
    rings left out (``part_pixels`` given: those whose cut would draw more background pixels than they cover).
    """
    cells = np.floor(np.concatenate(rings)).astype(np.int32)  # the pixel each point is drawn at
    starts = np.concatenate([[0], np.cumsum([len(ring) for ring in rings])])
    owner = np.repeat(np.arange(len(rings)), np.diff(starts))
    distance = np.full(len(cells), np.iinfo(np.int32).max, dtype=np.int32)  # to the nearest joined point
    nearest = np.full(len(cells), -1)  # that point (global index)
    open_points = owner != root  # points of rings not joined yet

    def absorb(k: int) -> None:
        """Update every open point's nearest joined point with ring k's points."""
        candidates = np.flatnonzero(open_points)
        if not len(candidates):
            return
        new_distance, new_nearest = _nearest_cells(cells[candidates], cells[starts[k] : starts[k + 1]])
        closer = new_distance < distance[candidates]
        distance[candidates[closer]] = new_distance[closer]
        nearest[candidates[closer]] = starts[k] + new_nearest[closer]

    absorb(root)
    pixels = None if part_pixels is None else np.asarray(part_pixels, dtype=np.int64)
    is_open = np.ones(len(rings), dtype=bool)
    is_open[root] = False
    attachments: dict[int, tuple[int, int, int]] = {}
    while is_open.any():
        ring_distance = np.minimum.reduceat(distance, starts[:-1])
        # background pixels a cut draws between two pixels d apart: d - 1
        usable = is_open if pixels is None else is_open & (np.maximum(ring_distance - 1, 0) <= pixels)
        if not usable.any():  # every remaining ring costs more than it covers
            return attachments, [int(k) for k in np.flatnonzero(is_open)]
        k = int(np.flatnonzero(usable)[ring_distance[usable].argmin()])
        own = int(distance[starts[k] : starts[k + 1]].argmin())
        parent_point = int(nearest[starts[k] + own])
        parent = int(owner[parent_point])
        attachments[k] = (own, parent, parent_point - int(starts[parent]))
        is_open[k] = False
        open_points[starts[k] : starts[k + 1]] = False
        absorb(k)
    return attachments, []


def _star(rings: list[np.ndarray], root: int) -> dict[int, tuple[int, int, int]]:
    """Every ring cut straight to its nearest point of ``root`` (attachments as :func:`_spanning_tree` returns)."""
    target = np.floor(rings[root]).astype(np.int32)
    attachments: dict[int, tuple[int, int, int]] = {}
    for k, ring in enumerate(rings):
        if k != root:
            distance, nearest = _nearest_cells(np.floor(ring).astype(np.int32), target)
            own = int(distance.argmin())
            attachments[k] = (own, root, int(nearest[own]))
    return attachments


def _nearest_cells(queries: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query pixel ((Q, 2) int XY) the Chebyshev distance to its nearest target pixel ((T, 2) int XY) and
    that target's index (the first on ties): ``((Q,) int32, (Q,) int64)``, computed :data:`_DISTANCE_BLOCK` pairs at a
    time."""
    distance = np.empty(len(queries), dtype=np.int32)
    index = np.empty(len(queries), dtype=np.int64)
    rows = max(1, _DISTANCE_BLOCK // len(targets))  # bounds the distance matrix's memory
    for start in range(0, len(queries), rows):
        chunk = queries[start : start + rows]
        distances = np.maximum(np.abs(chunk[:, 0, None] - targets[None, :, 0]),
                               np.abs(chunk[:, 1, None] - targets[None, :, 1]))
        best = distances.argmin(axis=1)
        index[start : start + len(chunk)] = best
        distance[start : start + len(chunk)] = distances[np.arange(len(chunk)), best]
    return distance, index


def _walk(
    dense: list[tuple[np.ndarray, np.ndarray]], root: int, attachments: dict[int, tuple[int, int, int]]
) -> np.ndarray:
    """The one ring of a tree of cuts: walk ``root``; at each point where rings are attached, walk each of them (from
    its attachment point all the way round back to it) and return to the point. Of the added edge points only those
    where a cut ends are kept."""
    keep = [own.copy() for _, own in dense]
    children: dict[int, list[tuple[int, int, int]]] = {}  # ring -> [(its point, child ring, the child's point)]
    for child, (own, parent, at) in attachments.items():
        children.setdefault(parent, []).append((at, child, own))
        keep[parent][at] = keep[child][own] = True
    pieces: list[np.ndarray] = []
    # what is left to emit, last first: ("ring", ring, start point, closes) or ("points", array)
    stack: list[tuple[Any, ...]] = [("ring", root, 0, False)]
    while stack:
        item = stack.pop()
        if item[0] == "points":
            pieces.append(item[1])
            continue
        _, k, start, closes = item
        points, count = dense[k][0], len(dense[k][0])
        order = np.roll(np.arange(count), -start)
        if closes:  # a joined ring ends where it started, then the cut leads back
            order = np.append(order, start)
        sequence: list[tuple[Any, ...]] = []
        done = 0
        for offset, child, child_start in sorted(((at - start) % count, c, own) for at, c, own in children.get(k, [])):
            sequence.append(("points", points[_kept(order[done : offset + 1], keep[k])]))
            sequence.append(("ring", child, child_start, True))
            sequence.append(("points", points[order[offset : offset + 1]]))  # back along the cut
            done = offset + 1
        sequence.append(("points", points[_kept(order[done:], keep[k])]))
        stack.extend(reversed(sequence))
    return np.concatenate([piece for piece in pieces if len(piece)])


def _kept(indices: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return indices[keep[indices]]


def part_ring(part: PolygonPart) -> np.ndarray:
    """A part as one ring: its outer polygon with every hole joined in by a zero-width cut (:func:`join_rings`)."""
    if not part.holes:
        return part.outer
    joined = join_rings([part.outer, *part.holes], root=0)
    assert joined is not None
    return joined.ring


def single_ring(parts: list[PolygonPart], part_pixels: list[int] | None = None) -> JoinedRing | None:
    """All parts of one object (holes included) as one ring, for formats with one polygon per object (YOLO):
    :func:`join_rings` of every :func:`part_ring`. ``None`` when there are no parts."""
    return join_rings([part_ring(part) for part in parts], part_pixels=part_pixels)
