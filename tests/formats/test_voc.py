"""VOC palette PNGs: class and instance maps, the devkit colour map, the mirror reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchlabel.formats.voc import (
    masks_to_voc_maps,
    read_palette_png,
    voc_object_map_to_masks,
    voc_palette,
    write_palette_png,
)
from tests.formats.masks import shape_masks


def test_the_palette_is_the_voc_devkit_colour_map() -> None:
    import imgviz

    assert np.array_equal(voc_palette(), imgviz.label_colormap())


def test_instances_and_classes_round_trip_through_png(tmp_path: Path) -> None:
    masks = [m for name, m in shape_masks().items() if name in ("ring", "two-parts", "2x3-px", "one-pixel")]
    classes, objects = masks_to_voc_maps(masks, [1, 3, 2, 1], 48, 64)
    write_palette_png(tmp_path / "o.png", objects)
    write_palette_png(tmp_path / "c.png", classes)
    read = voc_object_map_to_masks(read_palette_png(tmp_path / "o.png"))
    for k, (got, mask) in enumerate(zip(read, masks, strict=True)):
        later = np.logical_or.reduce(masks[k + 1 :]) if k + 1 < len(masks) else np.zeros_like(mask)
        assert np.array_equal(got, mask & ~later)  # what is visible: later instances are painted on top
    assert np.array_equal(read_palette_png(tmp_path / "c.png"), classes)
    assert set(np.unique(classes)) == {0, 1, 2, 3}


def test_a_later_instance_covers_an_earlier_one() -> None:
    big = np.ones((4, 4), bool)
    small = np.zeros((4, 4), bool)
    small[1, 1] = True
    classes, objects = masks_to_voc_maps([big, small], [1, 2], 4, 4)
    assert objects[1, 1] == 2 and classes[1, 1] == 2 and objects[0, 0] == 1


def test_limits_are_errors_not_wraparounds() -> None:
    with pytest.raises(ValueError, match="at most 254"):
        masks_to_voc_maps([np.zeros((2, 2), bool)] * 255, [1] * 255, 2, 2)
    with pytest.raises(ValueError, match="class index"):
        masks_to_voc_maps([np.zeros((2, 2), bool)], [255], 2, 2)
