"""Bounds on the numbers of a smart tool's context, checked when the request is validated (422 naming the field).

Label Studio sends region coordinates in percent of the image (0-100, a little outside when a region is dragged past
the edge) and the image's size in pixels. Anything far outside those ranges, not finite, or not a number at all is
refused before it reaches arithmetic that could overflow (``2**64``, ``1e300``, a 400-digit integer, ``Infinity``)
or allocate by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Regions in one context (Label Studio sends the connected regions of one smart tool: a handful).
MAX_CONTEXT_REGIONS = 1000
#: Coordinates and extents, percent of the image.
MAX_ABS_PERCENT = 10_000.0
#: ``original_width`` / ``original_height``, pixels.
MAX_SIDE_PX = 100_000
#: Rotations, degrees.
MAX_ABS_DEGREES = 3600.0

_VALUE_KEYS = ("x", "y", "width", "height")


def _number(value: object, where: str, *, low: float, high: float) -> None:
    """``value`` must be an int or float (not a bool), finite, within ``[low, high]``; else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {type(value).__name__}")
    # ints are compared as ints: float() of a 400-digit integer would overflow
    if isinstance(value, float) and value != value:
        raise ValueError(f"{where} must be a finite number, got NaN")
    if not low <= value <= high:
        shown = f"{value:.6g}" if isinstance(value, float) else f"an integer of {len(str(abs(value)))} digits"
        raise ValueError(f"{where} must be between {low:g} and {high:g}, got {shown}")


def check_context_numbers(items: Sequence[Any]) -> None:
    """Check the numbers of every region of ``context.result``. Raises ``ValueError`` naming ``result[i].key``.

    Only the keys batchlabel reads are checked (``original_width``, ``original_height``, ``image_rotation``,
    ``value.x/y/width/height/rotation``); absent or null keys are left to :mod:`batchlabel.annotate.context`.
    """
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # reported by parse_context with the item's index
        for key in ("original_width", "original_height"):
            if item.get(key) is not None:
                _number(item[key], f"result[{index}].{key}", low=1e-9, high=MAX_SIDE_PX)
        if item.get("image_rotation") is not None:
            _number(item["image_rotation"], f"result[{index}].image_rotation", low=-MAX_ABS_DEGREES,
                    high=MAX_ABS_DEGREES)
        value = item.get("value")
        if not isinstance(value, dict):
            continue
        for key in _VALUE_KEYS:
            if value.get(key) is not None:
                _number(value[key], f"result[{index}].value.{key}", low=-MAX_ABS_PERCENT, high=MAX_ABS_PERCENT)
        if value.get("rotation") is not None:
            _number(value["rotation"], f"result[{index}].value.rotation", low=-MAX_ABS_DEGREES,
                    high=MAX_ABS_DEGREES)
