"""COCO polygons: every part its own polygon with its holes cut in, rasterised back by pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from batchlabel.formats.coco_polygon import coco_polygons_to_mask, mask_to_coco_polygons
from tests.formats.masks import iou, shape_masks

MASKS = shape_masks()


@pytest.mark.parametrize("name", sorted(MASKS))
def test_round_trip_through_pycocotools_is_exact_at_the_default_tolerance(name: str) -> None:
    mask = MASKS[name]
    polygons = mask_to_coco_polygons(mask)
    assert all(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in polygons)
    assert np.array_equal(coco_polygons_to_mask(polygons, *mask.shape), mask)


def test_parts_stay_separate_polygons_and_holes_are_cut_into_their_part() -> None:
    assert len(mask_to_coco_polygons(MASKS["two-parts"])) == 2
    assert len(mask_to_coco_polygons(MASKS["ring"])) == 1  # the hole is in the one polygon
    assert len(mask_to_coco_polygons(MASKS["island-in-hole"])) == 2  # the island is a part of its own


@pytest.mark.parametrize(("tolerance_px", "worst_iou"), [(0.5, 0.75), (1.0, 0.6)])
def test_a_coarser_tolerance_stays_close(tolerance_px: float, worst_iou: float) -> None:
    shapes = [mask for name, mask in MASKS.items() if mask.sum() > 20]
    ious = [iou(coco_polygons_to_mask(mask_to_coco_polygons(m, tolerance_px=tolerance_px), *m.shape), m)
            for m in shapes]
    assert min(ious) >= worst_iou and np.mean(ious) >= 0.85, ious


def test_an_empty_mask_has_no_polygon() -> None:
    assert mask_to_coco_polygons(np.zeros((5, 5), bool)) == []
    assert not coco_polygons_to_mask([], 5, 5).any()
