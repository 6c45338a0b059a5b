"""Low-res mask logits -> thresholded masks at the original image size, exactly as SAM resizes them.

SAM's ``Sam.postprocess_masks`` resizes ``(256, 256)`` logits bilinearly to the padded model input (1024 or 256),
crops the resized image's ``input_size`` and resizes that bilinearly to the original ``(H, W)``; a pixel belongs to
the mask where the result is ``> 0``. Both resizes are linear and separable, so along each axis output pixel ``i`` is a
3-tap filter on the low-res logits (:func:`axis_taps`). :func:`upsample_masks` evaluates it without materialising
full-size float masks:

- only inside the bounding region of a mask's positive low-res logits (anything outside is a convex combination of
  non-positive logits, hence background);
- one horizontal pass on the (at most 256) low-res rows the region reads, giving ``wide`` ``(low rows, W)``;
- then the vertical filter. Consecutive output rows read the same three rows of ``wide`` (a *run*: about ``4 H / h``
  rows for 1024-px SAM, ``h`` the image's height inside the model input: 15.6 at 4000x3000), so a run is one small
  matrix product ``(run rows, 3) @ (3, W)`` into a reused buffer, thresholded straight into the bool output; at 12 MP
  that is 3-4.5x faster than gathering the tap rows per output row and 2-4x faster than SAM's own two
  ``F.interpolate`` calls (``benchmarks/upsample.py``). Short runs (small images) use the row gather, in chunks.

Coordinates: arrays are ``(row, column)``; sizes ``(height, width)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

#: Logit threshold above which a pixel belongs to the mask (``Sam.mask_threshold``).
MASK_THRESHOLD = 0.0
#: Output rows filtered at a time by the row-gathering vertical pass (bounds its float scratch to _ROW_CHUNK x width).
_ROW_CHUNK = 256
#: Mean output rows per run from which one matrix product per run beats gathering rows (measured on noise masks:
#: 4000x3000, 15.6 rows per run, 52 -> 9 ms; 640x480, 2.5 rows per run, 0.7 ms gathering vs 1.2 ms products).
_MIN_RUN_ROWS = 4


@lru_cache(maxsize=64)
def axis_taps(n_out: int, n_crop: int, n_padded: int, n_low: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights of SAM's two bilinear resizes along one axis, composed into one 3-tap filter on the low-res logits.

    SAM resizes low-res logits (``n_low``) to the padded input (``n_padded``), crops ``n_crop`` and resizes that to
    ``n_out`` (``F.interpolate(mode="bilinear", align_corners=False)`` both times). Output pixel ``i`` is then
    ``sum_j weights[i, j] * low[base[i] + j]`` for ``j < 3`` (an index past ``n_low - 1`` has weight 0).

    Returns:
        ``base`` ``(n_out,)`` int64, non-decreasing, and ``weights`` ``(n_out, 3)`` float32 (non-negative, each row
        sums to 1).
    """

    def linear(n_in: int, n_dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_dst, dtype=np.float64) + 0.5) * (n_in / n_dst) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    f0, f1, lam = linear(n_low, n_padded)  # padded row r <- low rows f0[r], f1[r]
    g0, g1, mu = linear(n_crop, n_out)  # output row i <- padded rows g0[i], g1[i]
    base = f0[g0]
    weights = np.zeros((n_out, 3), dtype=np.float64)
    rows = np.arange(n_out)
    for padded, w_padded in ((g0, 1.0 - mu), (g1, mu)):
        for low, w_low in ((f0[padded], 1.0 - lam[padded]), (f1[padded], lam[padded])):
            offset = low - base
            if offset.max(initial=0) > 2:
                raise AssertionError("bilinear composition spans more than 3 low-res pixels")
            np.add.at(weights, (rows, offset), w_padded * w_low)
    return base, weights.astype(np.float32)


def _region(base: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """Output index range ``[start, stop)`` whose taps ``base..base+2`` touch low-res indices ``lo..hi``."""
    start = int(np.searchsorted(base + 2, lo, side="left"))
    stop = int(np.searchsorted(base, hi, side="right"))
    return start, stop


def _vertical_gather(wide: np.ndarray, run: np.ndarray, w_y: np.ndarray, out: np.ndarray) -> None:
    """Vertical filter by gathering each output row's taps: ``out[i] = sum_a w_y[i, a] * wide[run[i] + a] > 0``.

    ``wide`` carries two extra copies of its last row at the end (taps past the edge have weight 0).
    """
    for c0 in range(0, len(run), _ROW_CHUNK):
        rows, weights = run[c0 : c0 + _ROW_CHUNK], w_y[c0 : c0 + _ROW_CHUNK]
        values = wide[rows] * weights[:, 0:1]
        values += wide[rows + 1] * weights[:, 1:2]
        values += wide[rows + 2] * weights[:, 2:3]
        np.greater(values, MASK_THRESHOLD, out=out[c0 : c0 + _ROW_CHUNK])


def _vertical_runs(wide: np.ndarray, run: np.ndarray, w_y: np.ndarray, out: np.ndarray) -> None:
    """The same filter, one ``(rows, 3) @ (3, W)`` product per run of output rows that read the same three rows."""
    starts = np.flatnonzero(np.diff(run, prepend=-1))
    stops = np.append(starts[1:], len(run))
    buffer = np.empty((int((stops - starts).max()), wide.shape[1]), dtype=np.float32)
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        row = int(run[start])
        values = buffer[: stop - start]
        np.matmul(w_y[start:stop], wide[row : row + 3], out=values)
        np.greater(values, MASK_THRESHOLD, out=out[start:stop])


def upsample_masks(
    logits: Tensor | np.ndarray, *, original_size: tuple[int, int], input_size: tuple[int, int], padded_size: int
) -> np.ndarray:
    """Threshold SAM's resized logits at full resolution without materialising full-size float masks.

    Same result as ``Sam.postprocess_masks(logits, input_size, original_size) > 0`` (up to float rounding); see the
    module docstring for how.

    Args:
        logits: ``(K, 256, 256)`` float low-res logits (a tensor on any device, or a numpy array).
        original_size: ``(H, W)`` of the output masks.
        input_size: ``(h, w)`` of the resized image inside the padded model input.
        padded_size: the model's square input side (1024 for SAM, 256 for LiteMedSAM).

    Returns:
        ``(K, H, W)`` bool numpy array.
    """
    if isinstance(logits, Tensor):
        logits = logits.detach().to("cpu", torch.float32).numpy()
    low_all = np.asarray(logits, dtype=np.float32)
    height, width = original_size
    n_low = low_all.shape[-1]
    out = np.zeros((low_all.shape[0], height, width), dtype=bool)
    base_y, w_y = axis_taps(height, input_size[0], padded_size, n_low)
    base_x, w_x = axis_taps(width, input_size[1], padded_size, n_low)
    for k, low in enumerate(low_all):
        positive = low > MASK_THRESHOLD
        rows = np.flatnonzero(positive.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(positive.any(axis=0))
        y0, y1 = _region(base_y, int(rows[0]), int(rows[-1]))
        x0, x1 = _region(base_x, int(cols[0]), int(cols[-1]))
        if y1 <= y0 or x1 <= x0:
            continue
        # horizontal pass on the low-res rows the region reads: (low rows, region width)
        r_lo, r_hi = int(base_y[y0]), min(int(base_y[y1 - 1]) + 2, n_low - 1)
        bx, wx = base_x[x0:x1], w_x[x0:x1]
        rows_low = low[r_lo : r_hi + 1]
        wide = np.empty((len(rows_low) + 2, x1 - x0), dtype=np.float32)  # + 2 copies of the last row: taps past it
        filtered = wide[: len(rows_low)]  # have weight 0
        np.multiply(rows_low[:, bx], wx[:, 0], out=filtered)
        filtered += rows_low[:, np.minimum(bx + 1, n_low - 1)] * wx[:, 1]
        filtered += rows_low[:, np.minimum(bx + 2, n_low - 1)] * wx[:, 2]
        wide[len(rows_low) :] = filtered[-1]
        run = base_y[y0:y1] - r_lo
        vertical = _vertical_runs if (y1 - y0) >= _MIN_RUN_ROWS * (run[-1] - run[0] + 1) else _vertical_gather
        vertical(wide, run, w_y[y0:y1], out[k, y0:y1, x0:x1])
    return out
