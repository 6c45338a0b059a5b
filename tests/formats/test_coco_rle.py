"""COCO RLE (pycocotools): JSON-ready round trip, area and bbox."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchlabel.formats.box import box_xywh_from_xyxy, mask_to_box_xyxy
from batchlabel.formats.coco_rle import coco_rle_area, coco_rle_bbox, coco_rle_to_mask, mask_to_coco_rle


def _masks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, columns = np.ogrid[:60, :90]
    ring = ((rows - 30) ** 2 + (columns - 40) ** 2 < 400) & ((rows - 30) ** 2 + (columns - 40) ** 2 >= 64)
    two_parts = np.zeros((50, 70), dtype=bool)
    two_parts[5:10, 5:20] = two_parts[30:45, 50:69] = True
    return {
        "ring": ring,
        "two-parts": two_parts,
        "random": rng.random((31, 17)) < 0.4,
        "empty": np.zeros((8, 9), dtype=bool),
        "full": np.ones((8, 9), dtype=bool),
        "one-pixel": np.pad(np.ones((1, 1), dtype=bool), ((2, 3), (4, 1))),
    }


MASKS = _masks()


@pytest.mark.parametrize("name", list(MASKS))
def test_round_trip_area_and_bbox(name: str) -> None:
    mask = MASKS[name]
    rle = mask_to_coco_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    rle = json.loads(json.dumps(rle))  # what a COCO file stores
    restored = coco_rle_to_mask(rle)
    assert restored.dtype == np.bool_
    np.testing.assert_array_equal(restored, mask)
    assert coco_rle_area(rle) == int(mask.sum())
    box = mask_to_box_xyxy(mask)
    assert coco_rle_bbox(rle) == (list(box_xywh_from_xyxy(box)) if box else [0.0, 0.0, 0.0, 0.0])


def test_column_major_order() -> None:
    mask = np.zeros((2, 3), dtype=bool)
    mask[0, 1] = True  # Fortran index 2: runs are 2 zeros, 1 one, 3 zeros
    from pycocotools import mask as mask_utils

    rle = mask_to_coco_rle(mask)
    uncompressed = {"size": [2, 3], "counts": [2, 1, 3]}
    assert mask_utils.decode(mask_utils.frPyObjects(uncompressed, 2, 3)).astype(bool).tolist() == mask.tolist()
    np.testing.assert_array_equal(coco_rle_to_mask(uncompressed), coco_rle_to_mask(rle))


@pytest.mark.parametrize(
    "rle",
    [{"counts": "abc"}, {"size": [3], "counts": "abc"}, {"size": [2, 2], "counts": 7}, "not a dict"],
    ids=["no-size", "short-size", "bad-counts", "not-a-dict"],
)
def test_bad_rle_raises_value_error(rle: object) -> None:
    with pytest.raises(ValueError, match="COCO RLE"):
        coco_rle_to_mask(rle)  # type: ignore[arg-type]
