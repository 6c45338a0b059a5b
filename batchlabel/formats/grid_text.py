"""Fast text of coordinates on the quarter-pixel grid, for the polygon formats' files.

Traced outlines (``outline="edges"``) have every point at ``k / 4`` pixels; writing hundreds of thousands of them
with ``json`` or ``%`` formatting costs more than tracing them. For such points the text comes from a table, made
once per image size, of exactly what the slow path writes (``repr`` of the float, or ``%.6f`` of it divided by the
image size), so the files are byte-identical either way. Points off the grid (box polygons of arbitrary boxes) take
the slow path in the callers, and so do the values of a table that has not paid for itself yet
(:func:`table_pays_off`).
"""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np

#: values asked for per table, so far (a table is built once it pays for itself: see :func:`table_pays_off`)
_ASKED: Counter[tuple[float, str]] = Counter()


def quarter_steps(values: np.ndarray, limit: float) -> np.ndarray | None:
    """``k`` (int64, same shape) with ``values == k / 4`` and ``0 <= values <= limit``; None when any value is off
    that grid or outside that range."""
    steps = np.rint(np.asarray(values, dtype=np.float64) * 4)
    if not len(steps.reshape(-1)):
        return steps.astype(np.int64)
    if steps.min() < 0 or steps.max() > 4 * limit or not np.array_equal(steps / 4, values):
        return None
    return steps.astype(np.int64)


def table_pays_off(count: int, limit: float, *, divisor: float = 1.0, style: str = "repr") -> bool:
    """Record ``count`` values of the table for ``divisor`` and ``style`` (whose steps go up to ``4 * limit``) and say
    whether to use it: once as many values were asked for as it holds, so that a dataset of many image sizes does not
    build a table per image for a few hundred values."""
    _ASKED[divisor, style] += count
    return _ASKED[divisor, style] >= 4 * limit


def step_texts(steps: np.ndarray, *, divisor: float = 1.0, style: str = "repr") -> np.ndarray:
    """The texts of ``k / 4 / divisor`` for int ``steps`` k (>= 0): ``repr`` of the float (what ``json`` writes) or
    ``"%.6f"`` of it (``style="fixed6"``); an object array of ``str``, the shape of ``steps``."""
    top = int(steps.max(initial=0)) + 1
    return _table(1 << max(top - 1, 1).bit_length(), float(divisor), style)[steps]


@functools.lru_cache(maxsize=32)
def _table(size: int, divisor: float, style: str) -> np.ndarray:
    values = ((np.arange(size) / 4) / divisor).tolist()
    texts = [repr(v) for v in values] if style == "repr" else [f"{v:.6f}" for v in values]
    return np.array(texts, dtype=object)
