"""Smart-tool context -> one prompt: manual regions only, all keypoints, the latest rectangle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from batchlabel.annotate.context import ContextError, parse_context


def keypoint(x: float, y: float, *, positive: bool = True, origin: str | None = "manual", label: str = "cat",
             size: tuple[int, int] = (640, 480)) -> dict[str, Any]:
    item = {"type": "keypointlabels", "from_name": "keypoint", "to_name": "image", "is_positive": positive,
            "original_width": size[0], "original_height": size[1],
            "value": {"x": x, "y": y, "width": 0.3, "keypointlabels": [label]}}
    if origin is not None:
        item["origin"] = origin
    return item


def rectangle(x: float, y: float, w: float, h: float, *, origin: str | None = "manual",
              label: str = "cat") -> dict[str, Any]:
    item = {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": 640,
            "original_height": 480,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}}
    if origin is not None:
        item["origin"] = origin
    return item


def test_all_manual_keypoints_positive_and_negative() -> None:
    parsed = parse_context([keypoint(50, 50), keypoint(25, 75, positive=False), keypoint(10, 10, origin=None)])
    assert parsed.kind == "points" and parsed.box is None and parsed.label == "cat"
    np.testing.assert_allclose(parsed.points, [[320, 240], [160, 360], [64, 48]])
    assert parsed.point_labels.tolist() == [1, 0, 1]
    assert parsed.frame_size == (480, 640)


def test_predicted_regions_are_ignored_and_the_latest_rectangle_wins() -> None:
    items = [rectangle(0, 0, 100, 100, origin="prediction"), rectangle(10, 10, 20, 20),
             rectangle(50, 50, 25, 25, label="person"), keypoint(1, 1, origin="prediction")]
    parsed = parse_context(items)
    assert parsed.kind == "box" and parsed.points is None and parsed.label == "person"
    np.testing.assert_allclose(parsed.box, [320, 240, 480, 360])


def test_box_and_points_combine() -> None:
    parsed = parse_context([rectangle(10, 10, 50, 50), keypoint(20, 20, positive=False)])
    assert parsed.kind == "box+points"
    prompt = parsed.to_prompt((480, 640))
    assert prompt.box is not None and prompt.points is not None and prompt.point_labels.tolist() == [0]


def test_to_prompt_rescales_when_the_embedding_frame_differs() -> None:
    parsed = parse_context([keypoint(50, 50), rectangle(0, 0, 100, 100)])
    prompt = parsed.to_prompt((960, 1280))  # e.g. Label Studio reported a downscaled size
    np.testing.assert_allclose(prompt.points, [[640, 480]])
    np.testing.assert_allclose(prompt.box, [0, 0, 1280, 960])


def test_out_of_image_coordinates_are_clipped() -> None:
    prompt = parse_context([keypoint(120, -5)]).to_prompt((480, 640))
    np.testing.assert_allclose(prompt.points, [[640, 0]])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "no manual"),
        ([rectangle(0, 0, 10, 10, origin="prediction")], "1 came from predictions"),
        ([{"type": "brushlabels", "value": {}}], "no manual"),
        (["not an object"], "expected an object"),
        ([keypoint(10, 10, size=(640, 480)), keypoint(10, 10, size=(320, 240))], "differs"),
        ([{**keypoint(1, 1), "original_width": -3}], "positive"),
        ([{**keypoint(1, 1), "value": {"x": "a", "y": 1, "keypointlabels": ["cat"]}}], "value.x must be a number"),
        ([{**keypoint(1, 1), "is_positive": "yes"}], "is_positive"),
        ([{**rectangle(1, 1, 5, 5), "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30,
                                              "rectanglelabels": ["cat"]}}], "rotat"),
    ],
)
def test_unusable_contexts_raise_context_error(items: list, message: str) -> None:
    with pytest.raises(ContextError, match=message):
        parse_context(items)
