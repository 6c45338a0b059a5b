"""The table text of quarter-pixel coordinates is byte-identical to what ``json`` and ``%.6f`` write."""

from __future__ import annotations

import json

import numpy as np

from batchlabel.formats.coco_polygon import coco_polygons_json, rings_to_coco_polygons
from batchlabel.formats.grid_text import quarter_steps
from batchlabel.formats.yolo import yolo_line


def test_table_text_equals_json_and_percent_formatting() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        width, height = (int(v) for v in rng.integers(1, 5000, 2))
        count = int(rng.integers(3, 60))
        ring = np.stack([rng.integers(0, 4 * width + 1, count) / 4, rng.integers(0, 4 * height + 1, count) / 4], 1)
        rings = [ring, ring[::-1].copy()]
        expected = json.dumps(rings_to_coco_polygons(rings), separators=(",", ":"))
        assert coco_polygons_json(rings, limit=max(width, height)) == expected
        values = np.clip(ring / np.array([width, height]), 0, 1).reshape(-1).tolist()
        slow = "3 " + " ".join(["%.6f"] * len(values)) % tuple(values)
        for _repeat in range(3):  # the first lines of a size take the slow path, later ones the table
            assert yolo_line(3, ring, width, height) == slow


def test_points_off_the_grid_or_outside_take_the_slow_path() -> None:
    assert quarter_steps(np.array([0.25, 1.5, 3.0]), 3) is not None
    assert quarter_steps(np.array([0.3, 1.5]), 3) is None  # not a multiple of 0.25
    assert quarter_steps(np.array([-0.25]), 3) is None and quarter_steps(np.array([3.25]), 3) is None
    off_grid = np.array([[0.3, 0.1], [5.0, 0.1], [5.0, 4.9]])
    assert coco_polygons_json([off_grid], limit=10) == json.dumps(rings_to_coco_polygons([off_grid]),
                                                                  separators=(",", ":"))
    assert yolo_line(0, off_grid, 10, 5) == "0 0.030000 0.020000 0.500000 0.020000 0.500000 0.980000"
