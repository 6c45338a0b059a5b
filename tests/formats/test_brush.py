"""Label Studio brush RLE: bit-exact with label_studio_sdk.converter.brush, both directions."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle

from batchlabel.formats.brush import (
    brush_rle_to_mask,
    decode_byte_runs,
    encode_byte_runs,
    mask_to_brush_rle,
)


def _disc_with_hole(height: int, width: int) -> np.ndarray:
    rows, columns = np.ogrid[:height, :width]
    radius2 = (rows - height / 2) ** 2 + (columns - width / 3) ** 2
    scale = max(height, width) ** 2
    return (radius2 < scale / 9) & (radius2 >= scale / 100)


def _make(kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random(shape) < 0.5
    if kind == "sparse":
        return rng.random(shape) < 0.02
    if kind == "empty":
        return np.zeros(shape, dtype=bool)
    if kind == "full":
        return np.ones(shape, dtype=bool)
    if kind == "blob":
        return _disc_with_hole(*shape)
    raise AssertionError(kind)


def _sdk_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    return decode_rle(rle).reshape(height, width, 4)[:, :, 3] > 0


SHAPES = [(1, 1), (3, 7), (1, 1000), (1000, 1), (64, 64), (97, 131), (1, 20000), (300, 300)]
KINDS = ["random", "sparse", "empty", "full", "blob"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", KINDS)
def test_encode_is_bit_exact_with_sdk(kind: str, shape: tuple[int, int]) -> None:
    mask = _make(kind, shape)
    assert mask_to_brush_rle(mask) == mask2rle(mask.astype(np.uint8) * 255)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", KINDS)
def test_decode_matches_sdk_and_round_trips(kind: str, shape: tuple[int, int]) -> None:
    mask = _make(kind, shape)
    rle = mask2rle(mask.astype(np.uint8) * 255)
    decoded = brush_rle_to_mask(rle, *shape)
    assert decoded.dtype == np.bool_ and decoded.shape == shape
    np.testing.assert_array_equal(decoded, _sdk_mask(rle, *shape))
    np.testing.assert_array_equal(decoded, mask)


def test_large_image_bit_exact_once() -> None:
    mask = _disc_with_hole(3000, 4000)
    rle = mask_to_brush_rle(mask)
    assert rle == mask2rle(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(brush_rle_to_mask(rle, 3000, 4000), mask)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_nonzero_is_foreground_for_any_dtype(dtype: type) -> None:
    mask = _make("random", (13, 17), seed=3)
    assert mask_to_brush_rle(mask.astype(dtype)) == mask_to_brush_rle(mask)


@pytest.mark.parametrize("seed", range(20))
def test_byte_runs_match_sdk_encode_rle(seed: int) -> None:
    """Any byte array, including runs of 1 byte (literal blocks) and runs over 65,536 bytes (split blocks)."""
    rng = np.random.default_rng(seed)
    n_runs = int(rng.integers(1, 40))
    lengths = rng.choice([1, 2, 7, 8, 9, 16, 17, 256, 257, 65536, 65537, 140000], size=n_runs)
    # consecutive runs differ, as in a run decomposition
    values = np.cumsum(rng.integers(1, 256, size=n_runs)) % 256
    array = np.repeat(values, lengths).astype(np.uint8)
    assert encode_byte_runs(lengths, values) == encode_rle(array)
    num, run_lengths, run_values = decode_byte_runs(encode_byte_runs(lengths, values))
    assert num == array.size
    np.testing.assert_array_equal(np.repeat(run_values, run_lengths).astype(np.uint8), array)


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def _front_end_style_stream(data: np.ndarray, rng: np.random.Generator, rle_sizes: tuple[int, ...]) -> list[int]:
    """A stream with multi-word literal blocks and repeat blocks, as Label Studio's front end (rle-pack) writes."""
    out = [_bits(data.size, 32), _bits(7, 5)] + [_bits(s - 1, 4) for s in rle_sizes]
    i = 0
    while i < data.size:
        t = int(rng.integers(0, 4))
        count = int(rng.integers(1, min(1 << rle_sizes[t], data.size - i) + 1))
        if data[i : i + count].min() == data[i : i + count].max() and rng.random() < 0.7:
            out.append("1" + _bits(t, 2) + _bits(count - 1, rle_sizes[t]) + _bits(int(data[i]), 8))
        else:
            out.append("0" + _bits(t, 2) + _bits(count - 1, rle_sizes[t]))
            out.extend(_bits(int(v), 8) for v in data[i : i + count])
        i += count
    bits = "".join(out)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]


@pytest.mark.parametrize("rle_sizes", [(3, 4, 8, 16), (2, 5, 9, 12), (1, 1, 1, 1)])
@pytest.mark.parametrize("seed", range(3))
def test_decodes_literal_blocks_like_sdk(rle_sizes: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = 9, 11
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    alpha = rng.integers(0, 3, size=(height, width)) * 100  # 0, 100, 200: anti-aliased edges
    rgba[..., 0] = 255
    rgba[..., 3] = alpha
    rle = _front_end_style_stream(rgba.reshape(-1), rng, rle_sizes)
    decoded = brush_rle_to_mask(rle, height, width)
    np.testing.assert_array_equal(decoded, _sdk_mask(rle, height, width))
    np.testing.assert_array_equal(decoded, alpha > 0)


@pytest.mark.parametrize(
    ("rle", "height", "width", "message"),
    [
        (mask2rle(np.full((4, 5), 255, np.uint8)), 5, 5, "needs 100"),
        (mask2rle(np.eye(40, dtype=np.uint8) * 255)[:-4], 40, 40, "truncated"),
        ([1, 2, 3], 1, 1, "at least 7 bytes"),
        ([0, 0, 0, 4, 300, 0, 0, 0], 1, 1, "0..255"),
    ],
    ids=["wrong-size", "truncated", "too-short", "not-bytes"],
)
def test_decode_errors_name_the_problem(rle: list[int], height: int, width: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        brush_rle_to_mask(rle, height, width)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (3, 4, 2), (7,)])
def test_encode_rejects_masks_without_two_dims_or_pixels(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="mask must"):
        mask_to_brush_rle(np.zeros(shape, dtype=bool))
