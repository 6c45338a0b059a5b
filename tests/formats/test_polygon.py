"""Polygons: holes and parts, tolerance in pixels, pixel-corner coordinates, percent points."""

from __future__ import annotations

import numpy as np
import pytest

from batchlabel.formats.polygon import (
    mask_to_polygon_parts,
    mask_to_polygons,
    polygon_from_percent,
    polygon_to_percent,
    polygons_to_mask,
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _ring(height: int, width: int, cy: float, cx: float, r_out: float, r_in: float) -> np.ndarray:
    rows, columns = np.ogrid[:height, :width]
    d2 = (rows - cy) ** 2 + (columns - cx) ** 2
    return (d2 < r_out**2) & (d2 >= r_in**2)


def _parts_with_holes() -> np.ndarray:
    """Two rings (one with an island in its hole), a rectangle with two holes, one touching the image border."""
    mask = _ring(120, 160, 40, 40, 30, 12) | _ring(120, 160, 40, 40, 6, 0)
    mask |= _ring(120, 160, 90, 120, 28, 10)
    mask[5:40, 100:159] = True
    mask[10:20, 110:125] = False
    mask[25:35, 130:150] = False
    mask[100:120, 0:30] = True  # touches the border
    return mask


def _blobs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((96, 128), dtype=bool)
    for _ in range(4):
        cy, cx = rng.uniform(10, 86), rng.uniform(10, 118)
        r_out = rng.uniform(6, 20)
        mask |= _ring(96, 128, cy, cx, r_out, rng.uniform(0, r_out * 0.6))
    return mask


MASKS = {
    "parts-and-holes": _parts_with_holes(),
    "blobs-0": _blobs(0),
    "blobs-1": _blobs(1),
    "blobs-2": _blobs(2),
    "square": np.pad(np.ones((5, 5), dtype=bool), 3),
    "full": np.ones((9, 13), dtype=bool),
}


@pytest.mark.parametrize("name", list(MASKS))
def test_round_trip_without_simplification_is_exact(name: str) -> None:
    mask = MASKS[name]
    polygons = mask_to_polygons(mask, tolerance_px=0, min_area_px=0)
    restored = polygons_to_mask(polygons, *mask.shape)
    assert _iou(restored, mask) >= 0.95
    np.testing.assert_array_equal(restored, mask)


@pytest.mark.parametrize(("tolerance_px", "min_iou"), [(0.5, 0.97), (1.5, 0.93), (3.0, 0.85)])
@pytest.mark.parametrize("name", ["parts-and-holes", "blobs-0", "blobs-1"])
def test_simplified_round_trip_keeps_the_shape(name: str, tolerance_px: float, min_iou: float) -> None:
    mask = MASKS[name]
    exact = mask_to_polygons(mask, tolerance_px=0, min_area_px=0)
    simplified = mask_to_polygons(mask, tolerance_px=tolerance_px, min_area_px=0)
    assert sum(len(p) for p in simplified) < sum(len(p) for p in exact)
    assert _iou(polygons_to_mask(simplified, *mask.shape), mask) >= min_iou


def test_parts_and_holes_are_reported_separately() -> None:
    parts = mask_to_polygon_parts(_parts_with_holes(), tolerance_px=1.0)
    hole_counts = sorted(len(part.holes) for part in parts)
    # ring+island: ring (1 hole) and island (0); second ring (1); rectangle (2 holes); border block (0)
    assert hole_counts == [0, 0, 1, 1, 2]
    for part in parts:
        for polygon in (part.outer, *part.holes):
            assert polygon.dtype == np.float64 and polygon.ndim == 2 and polygon.shape[1] == 2
            assert len(polygon) >= 3


def test_vertices_are_pixel_centres_in_corner_coordinates() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:7] = True  # rows 2..4, columns 3..6
    (polygon,) = mask_to_polygons(mask, tolerance_px=0.1)
    assert sorted(map(tuple, polygon.tolist())) == [(3.5, 2.5), (3.5, 4.5), (6.5, 2.5), (6.5, 4.5)]


@pytest.mark.parametrize(
    ("min_area_px", "expected_parts", "expected_holes"),
    [(0, 2, 1), (4, 2, 1), (5, 1, 1), (10, 1, 0)],
)
def test_min_area_drops_small_parts_and_fills_small_holes(
    min_area_px: float, expected_parts: int, expected_holes: int
) -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5:8, 5:8] = False  # a 9-pixel hole
    mask[15:17, 15:17] = True  # a 4-pixel part
    parts = mask_to_polygon_parts(mask, tolerance_px=0, min_area_px=min_area_px)
    assert len(parts) == expected_parts
    assert sum(len(part.holes) for part in parts) == expected_holes


@pytest.mark.parametrize("tolerance_px", [0, 1.5, 5.0])
def test_small_part_survives_simplification(tolerance_px: float) -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 2:5] = True
    polygons = mask_to_polygons(mask, tolerance_px=tolerance_px)
    assert len(polygons) == 1 and len(polygons[0]) >= 3


def _line_and_dots() -> np.ndarray:
    mask = np.zeros((6, 40), dtype=bool)
    mask[2, 3:30] = True  # a 1-pixel-wide line: zero polygon area, kept as its traced outline
    mask[0, 35] = True  # single pixels and 2-pixel parts have fewer than 3 points: dropped
    mask[4, 35:37] = True
    return mask


@pytest.mark.parametrize(
    ("mask", "min_area_px", "expected_lengths"),
    [
        (np.zeros((5, 5), dtype=bool), 0, []),
        (np.zeros((0, 0), dtype=bool), 0, []),
        (_line_and_dots(), 0, [52]),
        (_line_and_dots(), 100, []),
    ],
    ids=["empty", "no-pixels", "line-and-dots", "line-below-min-area"],
)
def test_thin_and_tiny_parts(mask: np.ndarray, min_area_px: float, expected_lengths: list[int]) -> None:
    polygons = mask_to_polygons(mask, tolerance_px=1.5, min_area_px=min_area_px)
    assert [len(p) for p in polygons] == expected_lengths
    if expected_lengths:
        np.testing.assert_array_equal(polygons_to_mask(polygons, *mask.shape), mask & ~_dots(mask.shape))


def _dots(shape: tuple[int, ...]) -> np.ndarray:
    dots = np.zeros(shape, dtype=bool)
    dots[0, 35] = dots[4, 35] = dots[4, 36] = True
    return dots


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1, 1), (4000, 3000)])
def test_percent_round_trip(width: int, height: int) -> None:
    polygon = np.array([[0.0, 0.0], [width, 0.0], [width / 2, height / 3]])
    points = polygon_to_percent(polygon, width, height)
    assert points[1] == [100.0, 0.0]
    np.testing.assert_allclose(polygon_from_percent(points, width, height), polygon)


def test_polygon_from_percent_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="pairs"):
        polygon_from_percent([[1.0, 2.0, 3.0]], 10, 10)


def test_rasteriser_fills_centres_inside_and_uses_even_odd() -> None:
    outer = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    inner = np.array([[3.0, 3.0], [7.0, 3.0], [7.0, 7.0], [3.0, 7.0]])
    filled = polygons_to_mask([outer], 10, 10)
    assert filled.all()
    with_hole = polygons_to_mask([outer, inner], 10, 10)
    assert not with_hole[4:6, 4:6].any() and with_hole[0].all()


def test_edge_outlines_sit_a_quarter_pixel_inside_the_pixel_edges() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:5] = True  # rows 2..4, columns 3..4
    (part,) = mask_to_polygon_parts(mask, tolerance_px=0, min_area_px=0, outline="edges")
    assert sorted(map(tuple, part.outer.tolist())) == [(3.25, 2.25), (3.25, 4.75), (4.75, 2.25), (4.75, 4.75)]
    one = np.zeros((4, 4), bool)
    one[1, 2] = True
    assert len(mask_to_polygon_parts(one, tolerance_px=1, min_area_px=0, outline="edges")) == 1
    with pytest.raises(ValueError, match="outline"):
        mask_to_polygon_parts(mask, outline="corners")  # type: ignore[arg-type]


def test_a_zero_width_cut_keeps_holes_and_parts_for_even_odd_filling() -> None:
    from batchlabel.formats.polygon import join_rings, part_ring, single_ring

    mask = _parts_with_holes()
    parts = mask_to_polygon_parts(mask, tolerance_px=0, min_area_px=0)
    separate = polygons_to_mask([ring for part in parts for ring in (part.outer, *part.holes)], *mask.shape)
    joined = single_ring(parts)
    assert joined is not None and joined.ring.shape[1] == 2 and joined.left_out == ()
    assert len(joined.ring) == sum(len(r) + 2 for p in parts for r in (p.outer, *p.holes)) - 2
    drawn = polygons_to_mask([joined.ring], *mask.shape)
    assert not (separate & ~drawn).any()  # nothing lost; only the cuts' edge pixels are added
    assert _iou(drawn, separate) > 0.97
    ring = part_ring(parts[0])
    assert len(ring) == len(parts[0].outer) + sum(len(h) + 2 for h in parts[0].holes)
    assert single_ring([]) is None
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    far = square + 10
    bridged = join_rings([square, far])
    assert bridged is not None
    assert bridged.ring.tolist() == [[0, 0], [4, 0], [4, 4], [10, 10], [14, 10], [14, 14], [10, 14], [10, 10],
                                     [4, 4], [0, 4]]  # in at the closest vertices, around, back along the cut


def test_a_part_whose_cut_costs_more_pixels_than_it_covers_is_left_out() -> None:
    """Stray pixels: one far from the object is left out of the joined ring, one beside it is kept (cost 1 <= 1)."""
    from batchlabel.formats.polygon import part_pixel_counts, single_ring
    from batchlabel.formats.yolo import yolo_polygon_to_mask

    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:25] = True
    mask[10, 26] = True  # one background pixel (column 25) between it and the square
    mask[35, 55] = True  # 30 px away
    parts = mask_to_polygon_parts(mask, tolerance_px=0.25, min_area_px=0, outline="edges")
    pixels = part_pixel_counts(mask, parts)
    assert sorted(pixels) == [1, 1, 400]
    joined = single_ring(parts, pixels)
    assert joined is not None and len(joined.left_out) == 1
    assert pixels[joined.left_out[0]] == 1 and parts[joined.left_out[0]].outer.min(axis=0).tolist() == [55.25, 35.25]
    drawn = yolo_polygon_to_mask(joined.ring, *mask.shape)
    assert drawn[10, 26] and not drawn[35, 55] and (drawn & ~mask).sum() == 1  # the one pixel of the short cut


def test_joining_thousands_of_parts_or_holes_stays_fast_and_even_odd_correct() -> None:
    """Noise (stray pixels, pinholes): beyond MAX_TREE_RINGS rings the join is linear, never minutes."""
    import time

    from batchlabel.formats.polygon import MAX_TREE_RINGS, part_pixel_counts, part_ring, single_ring

    holes = np.ones((240, 320), bool)
    holes[20:220:2, 20:300:2] = False  # 14,000 one-pixel holes
    started = time.perf_counter()
    (part,) = mask_to_polygon_parts(holes, tolerance_px=0.25, min_area_px=0, outline="edges")
    ring = part_ring(part)
    drawn = polygons_to_mask([ring], *holes.shape)
    specks = np.zeros((240, 320), bool)
    specks[20:220:2, 20:300:2] = True
    specks[100:140, 100:200] = True
    parts = mask_to_polygon_parts(specks, tolerance_px=0.25, min_area_px=0, outline="edges")
    joined = single_ring(parts, part_pixel_counts(specks, parts))
    elapsed = time.perf_counter() - started
    assert len(part.holes) > MAX_TREE_RINGS and len(parts) > MAX_TREE_RINGS
    assert (drawn == holes).mean() > 0.95 and not (holes & ~drawn).any()  # cuts fill some hole pixels, no more
    assert joined is not None and len(joined.left_out) >= len(parts) - MAX_TREE_RINGS
    assert elapsed < 60, elapsed  # a generous bound against a return of the quadratic join (minutes)
