"""Label Studio result items: builders <-> parsers, SDK compatibility, errors that name the problem."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from batchlabel.sync.label_config import ControlNames
from batchlabel.sync.results import (
    ResultFormatError,
    brush_result,
    object_results,
    parse_keypoint,
    parse_rectangle,
    parse_result_mask,
    polygon_results,
    rectangle_result,
    result_group_id,
)

HEIGHT, WIDTH = 48, 64
COMMON_KEYS = {"id", "from_name", "to_name", "type", "original_width", "original_height", "image_rotation", "value",
               "readonly"}


def _object() -> np.ndarray:
    """Two parts, the larger one with a hole."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[5:30, 10:50] = True
    mask[12:20, 20:30] = False
    mask[36:44, 4:12] = True
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_brush_result_round_trips_and_decodes_with_the_sdk() -> None:
    mask = _object()
    item = brush_result(mask, label="cat", from_name="brush", to_name="image", score=0.75, result_id="abc")
    assert set(item) == COMMON_KEYS | {"score"}
    assert item["id"] == "abc" and item["type"] == "brushlabels" and item["score"] == 0.75
    assert (item["original_width"], item["original_height"], item["image_rotation"]) == (WIDTH, HEIGHT, 0)
    assert item["readonly"] is False and item["value"]["format"] == "rle"
    item = json.loads(json.dumps(item))  # what Label Studio stores and sends back
    sdk = decode_rle(item["value"]["rle"]).reshape(HEIGHT, WIDTH, 4)[:, :, 3] > 0
    np.testing.assert_array_equal(sdk, mask)
    label, parsed = parse_result_mask(item)
    assert label == "cat"
    np.testing.assert_array_equal(parsed, mask)


def test_polygon_results_one_item_per_part_without_holes() -> None:
    mask = _object()
    items = polygon_results(mask, label="cat", from_name="polygon", to_name="image", tolerance_px=0, group_id="g1")
    assert [item["id"] for item in items] == ["g1_poly0", "g1_poly1"]
    union = np.zeros_like(mask)
    for item in items:
        assert set(item) == COMMON_KEYS and item["type"] == "polygonlabels" and item["value"]["closed"] is True
        assert all(0 <= x <= 100 and 0 <= y <= 100 for x, y in item["value"]["points"])
        label, part = parse_result_mask(json.loads(json.dumps(item)))
        assert label == "cat"
        union |= part
    filled = mask.copy()
    filled[12:20, 20:30] = True  # Label Studio polygons have no holes
    np.testing.assert_array_equal(union, filled)


@pytest.mark.parametrize(
    ("box", "size"),
    [((10.0, 5.0, 50.0, 30.0), (48, 64)), ((0.0, 0.0, 4000.0, 3000.0), (3000, 4000)), ((1.5, 2.25, 3.0, 4.0), (7, 9))],
)
def test_rectangle_round_trip(box: tuple[float, float, float, float], size: tuple[int, int]) -> None:
    item = rectangle_result(box, label="dog", from_name="rect", to_name="image", image_size=size)
    assert set(item) == COMMON_KEYS and item["value"]["rotation"] == 0
    assert (item["original_height"], item["original_width"]) == size
    label, parsed = parse_rectangle(item)
    assert label == "dog"
    assert parsed == pytest.approx(box)


@pytest.mark.parametrize(
    ("outputs", "expected_types"),
    [
        (("brush",), ["brushlabels"]),
        (("rectangle",), ["rectanglelabels"]),
        (("brush", "rectangle"), ["brushlabels", "rectanglelabels"]),
        (("brush", "polygon", "rectangle"), ["brushlabels", "polygonlabels", "polygonlabels", "rectanglelabels"]),
        ((), []),
    ],
)
def test_object_results_build_what_outputs_ask_for(outputs: tuple[str, ...], expected_types: list[str]) -> None:
    mask = _object()
    items = object_results(mask, label="cat", outputs=outputs, names=ControlNames(), score=0.5)
    assert [item["type"] for item in items] == expected_types
    assert len({result_group_id(item) for item in items}) <= 1
    assert len({item["id"] for item in items}) == len(items)
    for item in items:
        assert item["score"] == 0.5 and item["to_name"] == "image" and item["readonly"] is False
        assert item["from_name"] == {"brushlabels": "brush", "polygonlabels": "polygon",
                                     "rectanglelabels": "rect"}[item["type"]]
    for item in items:
        if item["type"] == "rectanglelabels":
            assert parse_rectangle(item)[1] == pytest.approx((4.0, 5.0, 50.0, 44.0))
        elif item["type"] == "brushlabels":
            np.testing.assert_array_equal(parse_result_mask(item)[1], mask)


def test_object_results_group_ids_differ_between_objects_and_can_be_given() -> None:
    mask = _object()
    first = object_results(mask, label="a", outputs=("brush", "rectangle"), names=ControlNames())
    second = object_results(mask, label="a", outputs=("brush", "rectangle"), names=ControlNames())
    assert result_group_id(first[0]) != result_group_id(second[0])
    given = object_results(mask, label="a", outputs=("brush", "rectangle"), names=ControlNames(), group_id="obj7")
    assert [item["id"] for item in given] == ["obj7_brush", "obj7_rect"]
    assert "score" not in given[0]


def test_object_results_empty_mask_gives_nothing() -> None:
    empty = np.zeros((HEIGHT, WIDTH), dtype=bool)
    assert object_results(empty, label="a", outputs=("brush", "polygon", "rectangle"), names=ControlNames()) == []


@pytest.mark.parametrize(
    ("outputs", "names", "message"),
    [
        (("mesh",), ControlNames(), "unknown pre-annotation output"),
        (("polygon",), ControlNames(polygon=None), "no such tool"),
        (("brush", "rectangle"), ControlNames(rectangle=None), "no such tool"),
    ],
)
def test_object_results_config_errors(outputs: tuple[str, ...], names: ControlNames, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        object_results(_object(), label="a", outputs=outputs, names=names)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"value": {"x": 50.0, "y": 25.0, "width": 0.3, "keypointlabels": ["cat"]}, "is_positive": True},
         ("cat", (32.0, 12.0), True)),
        ({"value": {"x": 0.0, "y": 100.0, "width": 0.3, "keypointlabels": ["cat"]}, "is_positive": False},
         ("cat", (0.0, 48.0), False)),
        ({"value": {"x": 10.0, "y": 10.0, "keypointlabels": ["dog"]}}, ("dog", (6.4, 4.8), True)),
    ],
    ids=["positive", "negative", "no-is-positive"],
)
def test_parse_keypoint(item: dict[str, Any], expected: tuple[str, tuple[float, float], bool]) -> None:
    item = {"type": "keypointlabels", "original_width": WIDTH, "original_height": HEIGHT, **item}
    label, point, is_positive = parse_keypoint(item)
    assert (label, is_positive) == (expected[0], expected[2])
    assert point == pytest.approx(expected[1])


def _brush_item() -> dict[str, Any]:
    return brush_result(_object(), label="cat", from_name="brush", to_name="image", result_id="r1")


def _broken(change: dict[str, Any], drop: tuple[str, ...] = (), value_change: dict[str, Any] | None = None) -> Any:
    item = copy.deepcopy(_brush_item())
    for key in drop:
        item.pop(key)
    item["value"].update(value_change or {})
    item.update(change)
    return item


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (_broken({}, drop=("original_width",)), "'r1'.*missing original_width"),
        (_broken({"original_height": 0}), "original_height must be a positive integer"),
        (_broken({"original_height": "48"}), "original_height must be a positive integer"),
        (_broken({"type": "ellipselabels"}), "unknown or unexpected type 'ellipselabels'"),
        (_broken({}, drop=("type",)), "unknown or unexpected type None"),
        (_broken({"image_rotation": 90}), "image_rotation=90 is not supported"),
        (_broken({"value": None}), "missing value"),
        (_broken({}, value_change={"brushlabels": []}), "exactly one label"),
        (_broken({}, value_change={"brushlabels": ["a", "b"]}), "exactly one label"),
        (_broken({}, value_change={"format": "png"}), "brush format 'png'"),
        (_broken({}, value_change={"rle": []}), "value.rle must be a non-empty list"),
        (_broken({}, value_change={"rle": [0, 1, 2]}), "bad rle"),
        (_broken({"original_width": WIDTH + 1}), "bad rle.*needs"),
        ([1, 2], "must be a JSON object"),
    ],
    ids=["no-width", "zero-height", "string-height", "unknown-type", "no-type", "rotated", "no-value",
         "no-label", "two-labels", "png", "empty-rle", "short-rle", "size-mismatch", "not-a-dict"],
)
def test_parse_result_mask_errors(item: Any, message: str) -> None:
    with pytest.raises(ResultFormatError, match=message):
        parse_result_mask(item)


def _polygon_item(points: Any) -> dict[str, Any]:
    return {"id": "p1", "type": "polygonlabels", "original_width": 10, "original_height": 10,
            "value": {"points": points, "closed": True, "polygonlabels": ["cat"]}}


@pytest.mark.parametrize(
    ("points", "message"),
    [([[1.0, 2.0], [3.0, 4.0]], "at least 3"), ("nope", "bad points"), (None, "bad points"),
     ([[1, 2], [3, float("nan")], [5, 6]], "finite")],
    ids=["two-points", "string", "missing", "nan"],
)
def test_parse_polygon_errors(points: Any, message: str) -> None:
    with pytest.raises(ResultFormatError, match=message):
        parse_result_mask(_polygon_item(points))


def test_parse_polygon_drawn_by_a_user() -> None:
    label, mask = parse_result_mask(_polygon_item([[0, 0], [100, 0], [100, 100], [0, 100]]))
    assert label == "cat" and mask.shape == (10, 10) and mask.all()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"x": 1, "y": 1, "width": 2, "height": 2, "rotation": 30, "rectanglelabels": ["a"]}, "rotation=30"),
        ({"x": 1, "y": 1, "width": 2, "rectanglelabels": ["a"]}, "value.height must be a number"),
        ({"x": 1, "y": 1, "width": 2, "height": 2, "rectanglelabels": "a"}, "exactly one label"),
    ],
    ids=["rotated", "no-height", "label-not-a-list"],
)
def test_parse_rectangle_errors(value: dict[str, Any], message: str) -> None:
    item = {"id": "x", "type": "rectanglelabels", "original_width": 10, "original_height": 10, "value": value}
    with pytest.raises(ResultFormatError, match=message):
        parse_rectangle(item)


def test_parse_keypoint_rejects_a_rectangle() -> None:
    item = rectangle_result((1, 1, 2, 2), label="a", from_name="rect", to_name="image", image_size=(5, 5))
    with pytest.raises(ResultFormatError, match="expected one of \\['keypointlabels'\\]"):
        parse_keypoint(item)


def test_polygon_mask_from_polygon_results_matches_brush_closely() -> None:
    rows, columns = np.ogrid[:HEIGHT, :WIDTH]
    disc = (rows - 24) ** 2 + (columns - 30) ** 2 < 18**2
    (item,) = polygon_results(disc, label="a", from_name="polygon", to_name="image", tolerance_px=1.5)
    # simplification chords cut inside a convex outline: about 0.94 on this 18-pixel-radius disc
    assert _iou(parse_result_mask(item)[1], disc) >= 0.92


@pytest.mark.parametrize(("key", "raw"), [("x", 10**400), ("width", float("inf")), ("y", float("nan")),
                                          ("original_width", 10**400), ("original_height", float("inf"))])
def test_numbers_a_float_cannot_hold_are_format_errors_not_crashes(key: str, raw: Any) -> None:
    """JSON allows integers of any size; one such number in a task must be that task's ResultFormatError (the
    batch goes on), not an OverflowError or TypeError that fails a whole /predict batch."""
    item = rectangle_result((4.0, 5.0, 50.0, 44.0), label="cat", from_name="box", to_name="image",
                            image_size=(100, 80))
    target = item if key.startswith("original_") else item["value"]
    target[key] = raw
    with pytest.raises(ResultFormatError, match=key):
        parse_rectangle(item)
