"""YOLO segment lines: one ring per object (parts and holes joined by cuts), normalised, as Ultralytics rasterises."""

from __future__ import annotations

import numpy as np
import pytest

from batchlabel.formats.yolo import (
    box_polygon,
    export_name,
    mask_to_yolo_polygon,
    yolo_line,
    yolo_line_to_polygon,
    yolo_polygon_to_mask,
)
from tests.formats.masks import iou, shape_masks

MASKS = shape_masks()
ONE_PART = [name for name in MASKS if name not in ("two-parts", "island-in-hole", "diagonal-pixels")]


@pytest.mark.parametrize("name", ONE_PART)
def test_a_one_part_mask_with_holes_round_trips_with_the_cut_as_the_only_difference(name: str) -> None:
    mask = MASKS[name]
    height, width = mask.shape
    line = yolo_line(0, mask_to_yolo_polygon(mask), width, height)
    class_index, polygon = yolo_line_to_polygon(line, width, height)
    drawn = yolo_polygon_to_mask(polygon, height, width)
    assert class_index == 0
    assert not (mask & ~drawn).any()  # every pixel of the mask is drawn
    cut = drawn & ~mask  # and only the cut across a hole is extra
    assert cut.sum() <= max(mask.shape) // 2


@pytest.mark.parametrize("name", ["two-parts", "island-in-hole", "diagonal-pixels"])
def test_parts_become_one_polygon_whose_cuts_cross_the_background(name: str) -> None:
    mask = MASKS[name]
    drawn = yolo_polygon_to_mask(mask_to_yolo_polygon(mask), *mask.shape)
    assert not (mask & ~drawn).any()
    assert iou(drawn, mask) >= 0.7


def test_lines_are_normalised_clipped_and_parsed_back() -> None:
    line = yolo_line(2, np.array([[-1.0, 0.0], [20.0, 0.0], [20.0, 10.0]]), 20, 10)
    assert line == "2 0.000000 0.000000 1.000000 0.000000 1.000000 1.000000"
    with pytest.raises(ValueError, match="class index and >= 3"):
        yolo_line_to_polygon("0 0.1 0.2 0.3 0.4", 10, 10)


def test_box_polygon_rasterises_to_the_box_pixels() -> None:
    drawn = yolo_polygon_to_mask(box_polygon((3, 2, 7, 5)), 10, 10)
    expected = np.zeros((10, 10), bool)
    expected[2:5, 3:7] = True
    assert np.array_equal(drawn, expected)


def test_export_names_keep_same_file_names_in_different_folders_apart() -> None:
    assert export_name(7, "a/cat.jpg") != export_name(8, "b/cat.jpg")
    assert export_name(7, "a/cat.jpg") == "7_cat.jpg"
