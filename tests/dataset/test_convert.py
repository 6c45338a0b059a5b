"""TaskConverter: one exported task -> COCO objects; grouping, boxes, polygons, orientation and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchlabel.dataset.convert import TaskConverter
from batchlabel.dataset.ls_export import DatasetError, ExportFormatError, select_annotation
from batchlabel.formats.coco_rle import coco_rle_to_mask
from batchlabel.sync.label_config import ControlNames
from batchlabel.sync.results import object_results
from tests.dataset import helpers

LABELS = ["cat", "person"]
SIZE = (60, 80)  # height, width


@pytest.fixture
def root(tmp_path: Path) -> Path:
    helpers.write_image(tmp_path, "img.png", np.zeros((*SIZE, 3), np.uint8))
    return tmp_path


def convert(root: Path, result: list[dict], **kwargs: object) -> tuple:
    task = helpers.task(3, "img.png", [helpers.annotation(result, 30)])
    converted = TaskConverter(LABELS, root, **kwargs).convert(task, select_annotation(task))
    return converted.objects, [f.kind for f in converted.findings], converted


def blob(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(SIZE, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_preannotation_groups_are_one_object_each(root: Path) -> None:
    two_parts = blob(5, 15, 5, 15) | blob(30, 50, 40, 70)
    result = object_results(two_parts, label="person", outputs=("brush", "polygon", "rectangle"),
                            names=ControlNames(), polygon_tolerance_px=0)
    result += object_results(blob(40, 55, 2, 20), label="cat", outputs=("polygon", "rectangle"),
                             names=ControlNames(), polygon_tolerance_px=0)
    assert len(result) == 6  # brush, 2 polygons, rect; polygon, rect
    objects, findings, _ = convert(root, result)
    assert [(o.category_id, o.kind) for o in objects] == [(2, "mask"), (1, "polygon")]
    assert np.array_equal(coco_rle_to_mask(objects[0].segmentation), two_parts)
    assert objects[1].area == blob(40, 55, 2, 20).sum()
    assert "box_only" not in findings


def test_polygon_parts_of_one_group_union_into_one_object(root: Path) -> None:
    two_parts = blob(5, 15, 5, 15) | blob(30, 50, 40, 70)
    result = object_results(two_parts, label="cat", outputs=("polygon",), names=ControlNames(),
                            polygon_tolerance_px=0)
    objects, _, _ = convert(root, result)
    assert len(objects) == 1 and objects[0].area == two_parts.sum()
    objects, _, _ = convert(root, result, segmentation="polygon")
    assert len(objects) == 1 and len(objects[0].segmentation) == 2


def test_a_lone_rectangle_is_a_box_only_object_and_a_manual_box_over_a_mask_is_its_companion(root: Path) -> None:
    lone = helpers.rectangle((10.0, 20.0, 30.5, 40.0), "cat", SIZE, result_id="manualbox1")
    objects, findings, _ = convert(root, [lone])
    assert objects[0].kind == "box" and objects[0].segmentation == []
    assert objects[0].bbox == pytest.approx([10.0, 20.0, 20.5, 20.0])
    assert objects[0].area == pytest.approx(410.0)
    assert findings == ["box_only"]

    mask = blob(20, 40, 10, 30)
    companion = helpers.rectangle((10.0, 20.0, 30.0, 40.0), "cat", SIZE, result_id="manualbox2")
    objects, _, _ = convert(root, [helpers.brush(mask, "cat", "manualbrush"), companion])
    assert [o.kind for o in objects] == ["mask"]
    other_label = helpers.rectangle((10.0, 20.0, 30.0, 40.0), "person", SIZE, result_id="manualbox3")
    objects, _, _ = convert(root, [helpers.brush(mask, "cat", "manualbrush"), other_label])
    assert [o.kind for o in objects] == ["mask", "box"]


def test_box_masker_turns_boxes_into_masks(root: Path) -> None:
    calls = []

    def masker(path: Path, size: tuple[int, int], boxes: np.ndarray) -> list[np.ndarray]:
        calls.append((path.name, size, boxes.tolist()))
        return [blob(round(b[1]), round(b[3]), round(b[0]), round(b[2])) for b in boxes]

    objects, findings, _ = convert(root, [helpers.rectangle((10, 20, 30, 40), "cat", SIZE)], box_masker=masker)
    assert [(name, size) for name, size, _ in calls] == [("img.png", SIZE)]
    assert calls[0][2] == [pytest.approx([10.0, 20.0, 30.0, 40.0])]
    assert objects[0].kind == "mask" and objects[0].area == 400 and "box_only" not in findings


def test_suspicious_data_is_reported(root: Path) -> None:
    outside = helpers.polygon([(-10, -10), (20, 0), (0, 20)], "cat", SIZE, result_id="out")
    tiny = helpers.brush(blob(0, 2, 0, 2), "cat", "tiny")
    unknown = helpers.brush(blob(10, 20, 10, 20), "dog", "dog")
    objects, findings, _ = convert(root, [outside, tiny, unknown])
    assert len(objects) == 2
    assert sorted(findings) == ["outside_image", "tiny_object", "unknown_label"]


def test_exif_rotated_file_matches_the_size_label_studio_showed(tmp_path: Path) -> None:
    rgb = np.zeros((*SIZE, 3), np.uint8)
    helpers.write_image(tmp_path, "img.png", rgb, exif_orientation=6)
    from PIL import Image

    with Image.open(tmp_path / "img.png") as stored:
        assert stored.size == (SIZE[0], SIZE[1])  # stored portrait, displayed landscape
    objects, _, converted = convert(tmp_path, [helpers.brush(blob(5, 10, 5, 10), "cat")])
    assert (converted.height, converted.width) == SIZE and objects[0].area == 25


def test_size_mismatch_rotation_and_bad_values_are_refused_with_the_task(root: Path) -> None:
    wrong_size = helpers.brush(np.ones((SIZE[1], SIZE[0]), bool), "cat", "w")
    with pytest.raises(DatasetError, match=r"task 3: annotation 30: result 0 .*labeled on a 60x80 .*img.png is 80x60"):
        convert(root, [wrong_size])
    rotated = {**helpers.brush(blob(1, 5, 1, 5), "cat", "r"), "image_rotation": 90}
    with pytest.raises(DatasetError, match="task 3: .*rotated by 90 degrees in Label Studio"):
        convert(root, [rotated])
    bad_rle = helpers.brush(blob(1, 5, 1, 5), "cat", "b")
    bad_rle["value"]["rle"] = bad_rle["value"]["rle"][:9]
    with pytest.raises(ExportFormatError, match="task 3: annotation 30: result 0 .*value.rle"):
        convert(root, [bad_rle])
    no_label = helpers.brush(blob(1, 5, 1, 5), "cat", "n")
    no_label["value"]["brushlabels"] = []
    with pytest.raises(ExportFormatError, match="value.brushlabels must be a non-empty list"):
        convert(root, [no_label])


def test_rotated_rectangle_uses_its_enclosing_box(root: Path) -> None:
    item = helpers.rectangle((20.0, 20.0, 40.0, 30.0), "cat", SIZE)
    item["value"]["rotation"] = 90
    objects, findings, _ = convert(root, [item])
    assert objects[0].bbox == pytest.approx([10.0, 20.0, 10.0, 20.0])
    assert "rotated_box" in findings


def test_keypoints_and_other_results_are_ignored(root: Path) -> None:
    keypoint = {"id": "k", "type": "keypointlabels", "from_name": "keypoint", "to_name": "image",
                "original_width": SIZE[1], "original_height": SIZE[0],
                "value": {"x": 10, "y": 10, "width": 1, "keypointlabels": ["cat"]}}
    choice = {"id": "c", "type": "choices", "from_name": "q", "to_name": "image", "value": {"choices": ["ok"]}}
    objects, findings, converted = convert(root, [keypoint, choice])
    assert objects == () and findings == [] and converted.annotation["id"] == 30
