"""Low-res mask logits -> thresholded masks at the original image size, exactly as SAM resizes them.

SAM's ``Sam.postprocess_masks`` resizes ``(256, 256)`` logits bilinearly to the padded model input (1024 or 256),
crops the resized image's ``input_size`` and resizes that bilinearly to the original ``(H, W)``; a pixel belongs to
the mask where the result is ``> 0``. Both resizes are linear and separable, so along each axis output pixel ``i`` is a
3-tap filter on the low-res logits (:func:`axis_taps`). :func:`upsample_masks` evaluates it without materialising
full-size float masks:

- only inside the bounding region of a mask's positive low-res logits (anything outside is a convex combination of
  non-positive logits, hence background);
- one horizontal pass on the (at most 256) low-res rows the region reads, then, for every run of output rows that
  read the same three low-res rows, the sign is already certain in each column where those three values agree
  (a convex combination of positive values is positive, of non-positive values non-positive): that run is filled by
  copying one row, and only the uncertain columns, a band along the mask's edges, get the vertical filter. Masks
  whose band covers much of the region (noise from random weights) take the dense vertical pass instead.

Coordinates: arrays are ``(row, column)``; sizes ``(height, width)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

#: Logit threshold above which a pixel belongs to the mask (``Sam.mask_threshold``).
MASK_THRESHOLD = 0.0
#: Output rows upsampled at a time by the dense vertical pass (bounds its float scratch to _ROW_CHUNK x width).
_ROW_CHUNK = 256
#: Above this fraction of uncertain pixels in a mask's region, the dense vertical pass is cheaper than the band.
_DENSE_FRACTION = 0.12


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


def _shifted_rows(wide: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``wide`` and its rows shifted up by one and two (the last row repeated): the three taps of each row."""
    last = wide.shape[0] - 1
    return wide, wide[np.minimum(np.arange(1, last + 2), last)], wide[np.minimum(np.arange(2, last + 3), last)]


def _vertical_dense(taps: tuple[np.ndarray, ...], run: np.ndarray, w_y: np.ndarray, out: np.ndarray) -> None:
    """Vertical filter on every pixel: ``out[i] = sum_a w_y[i, a] * taps[a][run[i]] > 0``, in row chunks."""
    for c0 in range(0, len(run), _ROW_CHUNK):
        rows, weights = run[c0 : c0 + _ROW_CHUNK], w_y[c0 : c0 + _ROW_CHUNK]
        values = taps[0][rows] * weights[:, 0:1]
        values += taps[1][rows] * weights[:, 1:2]
        values += taps[2][rows] * weights[:, 2:3]
        np.greater(values, MASK_THRESHOLD, out=out[c0 : c0 + _ROW_CHUNK])


def _vertical_band(
    taps: tuple[np.ndarray, ...], certain: np.ndarray, uncertain: np.ndarray, run: np.ndarray, w_y: np.ndarray,
    mask: np.ndarray, origin: tuple[int, int],
) -> None:
    """Fill the region from the per-run certain signs, then apply the vertical filter on the uncertain pixels only.

    Args:
        taps: three ``(runs, width)`` float arrays, the low-res rows each run of output rows reads.
        certain, uncertain: ``(runs, width)`` bool: the sign is known positive / not known from the taps alone.
        run: ``(rows,)`` int, non-decreasing: the run of each output row of the region.
        w_y: ``(rows, 3)`` vertical weights of the region's output rows.
        mask: the whole ``(H, W)`` C-contiguous bool output; ``origin`` the region's top-left ``(y0, x0)`` in it.
    """
    height, width = len(run), certain.shape[1]
    y0, x0 = origin
    mask[y0 : y0 + height, x0 : x0 + width] = certain[run]
    run_rows, cols = np.nonzero(uncertain)
    if run_rows.size == 0:
        return
    runs = np.arange(certain.shape[0])
    first = np.searchsorted(run, runs, side="left")[run_rows]
    count = np.searchsorted(run, runs, side="right")[run_rows] - first
    tap_values = [tap[run_rows, cols] for tap in taps]
    weight_columns = [np.ascontiguousarray(w_y[:, a]) for a in range(3)]
    flat_mask = mask.reshape(-1)
    # the o-th output row of every uncertain (run, column) at once; runs are about as long as the upscaling factor
    for offset in range(int(count.max(initial=0))):
        keep = count > offset
        if keep.all():
            rows, at, values = first + offset, cols, tap_values
        else:
            rows, at, values = first[keep] + offset, cols[keep], [v[keep] for v in tap_values]
        result = values[0] * weight_columns[0].take(rows)
        result += values[1] * weight_columns[1].take(rows)
        result += values[2] * weight_columns[2].take(rows)
        flat_mask[(rows + y0) * mask.shape[1] + (at + x0)] = result > MASK_THRESHOLD


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
        wide = rows_low[:, bx] * wx[:, 0]
        wide += rows_low[:, np.minimum(bx + 1, n_low - 1)] * wx[:, 1]
        wide += rows_low[:, np.minimum(bx + 2, n_low - 1)] * wx[:, 2]
        taps = _shifted_rows(wide)
        run = base_y[y0:y1] - r_lo
        lowest = np.minimum(np.minimum(taps[0], taps[1]), taps[2])
        highest = np.maximum(np.maximum(taps[0], taps[1]), taps[2])
        certain = lowest > MASK_THRESHOLD
        uncertain = (highest > MASK_THRESHOLD) & ~certain
        run_lengths = np.bincount(run, minlength=wide.shape[0])
        band_pixels = int((uncertain.sum(axis=1) * run_lengths).sum())
        if band_pixels > _DENSE_FRACTION * (y1 - y0) * (x1 - x0):
            _vertical_dense(taps, run, w_y[y0:y1], out[k, y0:y1, x0:x1])
        else:
            _vertical_band(taps, certain, uncertain, run, w_y[y0:y1], out[k], (y0, x0))
    return out
