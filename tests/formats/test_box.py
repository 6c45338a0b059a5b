"""Boxes: pixel-edge XYXY from masks, XYWH, Label Studio percent rectangles."""

from __future__ import annotations

import numpy as np
import pytest

from batchlabel.formats.box import (
    box_from_percent,
    box_to_percent,
    box_xywh_from_xyxy,
    box_xyxy_from_xywh,
    box_xyxy_to_mask,
    mask_to_box_xyxy,
)


def _mask(shape: tuple[int, int], *pixels: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for row, column in pixels:
        mask[row, column] = True
    return mask


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (_mask((5, 5)), None),
        (_mask((5, 5), (0, 0)), (0.0, 0.0, 1.0, 1.0)),
        (_mask((5, 5), (4, 4)), (4.0, 4.0, 5.0, 5.0)),
        (_mask((4, 6), (1, 2), (3, 4)), (2.0, 1.0, 5.0, 4.0)),
        (np.ones((3, 7), dtype=bool), (0.0, 0.0, 7.0, 3.0)),
        (np.ones((3, 7), dtype=np.uint8), (0.0, 0.0, 7.0, 3.0)),
    ],
    ids=["empty", "top-left-pixel", "bottom-right-pixel", "two-pixels", "full", "uint8"],
)
def test_mask_to_box_uses_pixel_edges(mask: np.ndarray, expected: tuple[float, ...] | None) -> None:
    assert mask_to_box_xyxy(mask) == expected


@pytest.mark.parametrize("box", [(0.0, 0.0, 1.0, 1.0), (2.0, 1.0, 5.0, 4.0), (0.0, 0.0, 7.0, 3.0)])
def test_box_to_mask_mirrors_mask_to_box(box: tuple[float, float, float, float]) -> None:
    mask = box_xyxy_to_mask(box, 5, 7)
    assert mask_to_box_xyxy(mask) == box
    assert mask.sum() == (box[2] - box[0]) * (box[3] - box[1])


@pytest.mark.parametrize(
    ("box", "expected_pixels"),
    [((0.4, 0.4, 2.6, 1.6), 6), ((-5.0, -5.0, 1.0, 1.0), 1), ((0.6, 0.0, 1.4, 1.0), 0), ((6.0, 2.0, 99.0, 99.0), 1)],
    ids=["fractional", "outside-left", "no-centre-inside", "outside-right"],
)
def test_box_to_mask_fills_pixel_centres_inside_and_clips(
    box: tuple[float, float, float, float], expected_pixels: int
) -> None:
    assert box_xyxy_to_mask(box, 3, 7).sum() == expected_pixels


@pytest.mark.parametrize("box", [(0.0, 0.0, 1.0, 1.0), (2.5, 1.25, 5.0, 4.0), (10.0, 20.0, 10.0, 20.0)])
def test_xywh_round_trip(box: tuple[float, float, float, float]) -> None:
    xywh = box_xywh_from_xyxy(box)
    assert xywh[2] == box[2] - box[0] and xywh[3] == box[3] - box[1]
    assert box_xyxy_from_xywh(xywh) == box


@pytest.mark.parametrize(
    ("box", "width", "height", "expected"),
    [
        ((0.0, 0.0, 640.0, 480.0), 640, 480, {"x": 0.0, "y": 0.0, "width": 100.0, "height": 100.0}),
        ((64.0, 48.0, 128.0, 96.0), 640, 480, {"x": 10.0, "y": 10.0, "width": 10.0, "height": 10.0}),
        ((1.0, 2.0, 3.0, 4.0), 4000, 3000, {"x": 0.025, "y": 2 / 30, "width": 0.05, "height": 2 / 30}),
    ],
)
def test_percent_round_trip(
    box: tuple[float, float, float, float], width: int, height: int, expected: dict[str, float]
) -> None:
    value = box_to_percent(box, width, height)
    assert value == pytest.approx(expected)
    assert box_from_percent(value, width, height) == pytest.approx(box)


def test_box_from_percent_names_a_missing_key() -> None:
    with pytest.raises(KeyError, match="height"):
        box_from_percent({"x": 1.0, "y": 1.0, "width": 1.0}, 10, 10)
