"""Label Studio brush RLE, vectorised and bit-exact with ``label_studio_sdk.converter.brush``.

Label Studio stores a brush mask as the run-length encoding (thi.ng ``rle-pack``) of the flattened bytes of an RGBA
image of the mask, row-major, 4 bytes per pixel. The bit stream (MSB first) is:

- header: ``num`` (32 bits, number of bytes = 4 * H * W), ``word_size - 1`` (5 bits), then four ``rle_size - 1``
  (4 bits each; the SDK and Label Studio use word size 8 and rle sizes ``[3, 4, 8, 16]``);
- then blocks until ``num`` bytes are produced: a flag bit (1 = repeat, 0 = literal), a 2-bit index ``t`` into the
  rle sizes, a count ``c`` of ``rle_sizes[t]`` bits meaning ``c + 1`` bytes, then one word (repeat: the value of all
  ``c + 1`` bytes) or ``c + 1`` words (literal);
- zero padding to a whole byte. The SDK always appends 1 to 8 zero bits (a whole zero byte when the stream already
  ends on a byte boundary); :func:`mask_to_brush_rle` does the same so the output is identical.

The SDK's encoder emits only repeat blocks (and 1-byte literals for runs of length 1, which a mask never has: every
pixel is 4 equal bytes), splitting runs longer than 65,536 bytes into 65,536-byte blocks. Label Studio's own
front-end encoder also emits multi-word literal blocks; :func:`brush_rle_to_mask` decodes any valid stream.
"""

from __future__ import annotations

import numpy as np

#: Bytes per pixel in Label Studio's RGBA brush image.
BYTES_PER_PIXEL = 4
#: Header of every stream the SDK writes: word size 8, rle sizes (3, 4, 8, 16), as 21 bits after ``num``.
_WORD_SIZE = 8
_RLE_SIZES = (3, 4, 8, 16)
_HEADER_TAIL = ((_WORD_SIZE - 1) << 16) | sum((size - 1) << (12 - 4 * i) for i, size in enumerate(_RLE_SIZES))
_HEADER_BITS = 32 + 5 + 16
#: Longest run one repeat block of the 16-bit size class can hold, in bytes.
_MAX_BLOCK = 1 << 16
_MASK64 = (1 << 64) - 1


def _mask_bytes(mask: np.ndarray) -> np.ndarray:
    """(H, W) mask -> flat C-order uint8 array of 0/1 (nonzero = foreground). No copy for a contiguous bool mask."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"mask must have at least one pixel, got shape {array.shape}")
    if array.dtype != np.bool_:
        array = array != 0
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _run_starts(flat: np.ndarray) -> np.ndarray:
    """Start indices (int64) of the runs of equal values in a 1-D uint8 array, beginning with 0."""
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    starts = np.empty(changes.size + 1, dtype=np.int64)
    starts[0] = 0
    np.add(changes, 1, out=starts[1:])
    return starts


def _encode_runs(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks the SDK's ``encode_rle`` writes for byte runs: (codes uint64, bit lengths int64), in stream order.

    ``lengths`` (R,) int64 run lengths in bytes (>= 1), ``values`` (R,) byte values 0..255.
    """
    values = values.astype(np.uint64)
    # Runs longer than the 16-bit class are split into full 65,536-byte blocks and a remainder of 1..65,536 bytes.
    n_full = np.where(lengths > 256, (lengths - 1) // _MAX_BLOCK, 0)
    # Size class t by run length: <= 8 -> 3 bits, <= 16 -> 4, <= 256 -> 8, else 16 (SDK thresholds); every block
    # of a split run, remainder included, stays in the 16-bit class.
    size_class = np.searchsorted(np.array([8, 16, 256]), lengths, side="left")
    flag = lengths > 1  # a single byte is written as a 1-word literal block
    if n_full.any():
        per_run = n_full + 1
        first = np.cumsum(per_run) - per_run
        run_of_block = np.repeat(np.arange(lengths.size), per_run)
        index_in_run = np.arange(run_of_block.size) - first[run_of_block]
        is_full = index_in_run < n_full[run_of_block]
        block_lengths = np.where(is_full, _MAX_BLOCK, lengths[run_of_block] - n_full[run_of_block] * _MAX_BLOCK)
        block_values = values[run_of_block]
        size_class = size_class[run_of_block]
        flag = flag[run_of_block]
    else:
        block_lengths, block_values = lengths, values
    count = (block_lengths - 1).astype(np.uint64)
    count_bits = np.array(_RLE_SIZES, dtype=np.int64)[size_class]
    flag = flag.astype(np.uint64)
    codes = (
        (flag << (2 + count_bits + _WORD_SIZE).astype(np.uint64))
        | (size_class.astype(np.uint64) << (count_bits + _WORD_SIZE).astype(np.uint64))
        | (count << np.uint64(_WORD_SIZE))
        | block_values
    )
    return codes, 3 + count_bits + _WORD_SIZE


def _pack_codes(codes: np.ndarray, bit_lengths: np.ndarray) -> np.ndarray:
    """Concatenate variable-length codes (each <= 32 bits, MSB first) into bytes, plus 1..8 zero padding bits."""
    ends = np.cumsum(bit_lengths)
    offsets = ends - bit_lengths
    total_bits = int(ends[-1]) if ends.size else 0
    n_bytes = total_bits // 8 + 1  # the SDK always pads with 1..8 zero bits
    # Left-align each code in a 40-bit window starting at its first byte; its bits never overlap another code's,
    # so the bytes of all windows can be summed into the output.
    shifts = (40 - bit_lengths - (offsets & 7)).astype(np.uint64)
    windows = codes << shifts
    first_byte = offsets >> 3
    out = np.zeros(n_bytes + 5, dtype=np.float64)
    for k in range(5):
        part = ((windows >> np.uint64(32 - 8 * k)) & np.uint64(0xFF)).astype(np.float64)
        out += np.bincount(first_byte + k, weights=part, minlength=out.size)
    return out[:n_bytes].astype(np.uint8)


def encode_byte_runs(lengths: np.ndarray, values: np.ndarray) -> list[int]:
    """Brush RLE of a byte array given as runs: what ``encode_rle(np.repeat(values, lengths))`` returns.

    ``lengths`` (R,) positive run lengths in bytes, consecutive runs with different ``values`` (R,) 0..255.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    values = np.asarray(values)
    num = int(lengths.sum())
    run_codes, run_bits = _encode_runs(lengths, values)
    codes = np.concatenate([np.array([num, _HEADER_TAIL], dtype=np.uint64), run_codes])
    bit_lengths = np.concatenate([np.array([32, _HEADER_BITS - 32], dtype=np.int64), run_bits])
    return _pack_codes(codes, bit_lengths).tolist()


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) bool mask (or any dtype, nonzero = foreground) as Label Studio brush RLE.

    Returns the same list of byte values (ints 0..255) as the SDK's
    ``mask2rle(mask.astype(np.uint8) * 255)`` for a 0/1 mask: an RGBA image whose four channels are 255 on the
    mask and 0 elsewhere. Row-major (C order) over the image as displayed (after EXIF orientation).
    Raises ``ValueError`` for a mask that is not 2-D or has no pixels (the SDK cannot encode those either).
    """
    flat = _mask_bytes(mask)
    starts = _run_starts(flat)
    lengths = np.diff(starts, append=flat.size) * BYTES_PER_PIXEL
    values = flat[starts] * np.uint8(255)
    return encode_byte_runs(lengths, values)


class _BitReader:
    """Random-access reads of big-endian bit fields (<= 57 bits) from a byte string."""

    def __init__(self, data: np.ndarray) -> None:
        padded = np.zeros(data.size + 8, dtype=np.uint8)
        padded[: data.size] = data
        windows = np.lib.stride_tricks.sliding_window_view(padded, 8)[: data.size + 1]
        self.n_bits = data.size * 8
        #: 64-bit big-endian window starting at each byte, as Python ints for fast scalar reads.
        self.windows_u64 = np.ascontiguousarray(windows).view(">u8").reshape(-1).astype(np.uint64)
        self.windows = self.windows_u64.tolist()

    def read(self, position: int, n_bits: int) -> int:
        """The unsigned ``n_bits``-bit field at bit ``position``."""
        if position + n_bits > self.n_bits:
            raise ValueError(f"brush RLE is truncated: needs bit {position + n_bits}, has {self.n_bits}")
        word = self.windows[position >> 3]
        return (word >> (64 - (position & 7) - n_bits)) & ((1 << n_bits) - 1)

    def read_many(self, positions: np.ndarray, n_bits: int) -> np.ndarray:
        """``n_bits``-bit fields (uint64) at each of ``positions`` (int64), vectorised."""
        if positions.size and int(positions[-1]) + n_bits > self.n_bits:
            raise ValueError(f"brush RLE is truncated: needs bit {int(positions[-1]) + n_bits}, has {self.n_bits}")
        words = self.windows_u64[positions >> 3]
        shifts = (64 - (positions & 7) - n_bits).astype(np.uint64)
        return (words >> shifts) & np.uint64((1 << n_bits) - 1)


def decode_byte_runs(rle: list[int] | np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Parse any brush RLE stream into byte runs: (num bytes, run lengths int64 (R,), run values uint64 (R,)).

    The runs may sum to more than ``num`` (a last block that overshoots, which decoders truncate). Raises
    ``ValueError`` for a stream that is truncated or whose header is invalid.
    The block scan is a Python loop over blocks (one per run, not per byte: ~1 us each, about 6,000 blocks for an
    object on a 12 MP image); literal words and the expansion to pixels are vectorised.
    """
    data = np.asarray(rle)
    if data.ndim != 1 or data.size < 7:
        raise ValueError(f"brush RLE must be a flat list of at least 7 bytes, got {data.size}")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or data.min() < 0 or data.max() > 255:
            raise ValueError("brush RLE must be a list of integers 0..255")
        data = data.astype(np.uint8)
    reader = _BitReader(data)
    num = reader.read(0, 32)
    word_size = reader.read(32, 5) + 1
    rle_sizes = [reader.read(37 + 4 * i, 4) + 1 for i in range(4)]
    lengths: list[int] = []
    values: list[int] = []
    literal_chunks: list[tuple[int, np.ndarray]] = []  # (index in lengths/values where the literal goes, words)
    position = _HEADER_BITS
    produced = 0
    windows = reader.windows
    n_bits = reader.n_bits
    word_mask = (1 << word_size) - 1
    count_masks = [(1 << size) - 1 for size in rle_sizes]
    append_length, append_value = lengths.append, values.append
    # Hot loop, one iteration per block: a repeat block (flag, class, count, word: <= 3 + 16 + 32 bits) is read
    # from a single 64-bit window starting at its byte.
    while produced < num:
        if position >= n_bits:
            raise ValueError(f"brush RLE is truncated: {produced} of {num} bytes decoded when the data ended")
        window = (windows[position >> 3] << (position & 7)) & _MASK64
        size_class = (window >> 61) & 3
        count_bits = rle_sizes[size_class]
        count = ((window >> (61 - count_bits)) & count_masks[size_class]) + 1
        if window >> 63:
            append_length(count)
            append_value((window >> (61 - count_bits - word_size)) & word_mask)
            position += 3 + count_bits + word_size
        else:
            position += 3 + count_bits
            count = min(count, num - produced)
            words = reader.read_many(position + word_size * np.arange(count, dtype=np.int64), word_size)
            literal_chunks.append((len(lengths), words))
            append_length(0)  # placeholder, replaced by the literal's words below
            append_value(0)
            position += word_size * count
        produced += count
    if position > n_bits:
        raise ValueError(f"brush RLE is truncated: needs {position} bits, has {n_bits}")
    run_lengths = np.asarray(lengths, dtype=np.int64)
    run_values = np.asarray(values, dtype=np.uint64)
    if literal_chunks:
        pieces_l, pieces_v = [], []
        previous = 0
        for index, words in literal_chunks:
            pieces_l += [run_lengths[previous:index], np.ones(words.size, dtype=np.int64)]
            pieces_v += [run_values[previous:index], words]
            previous = index + 1
        pieces_l.append(run_lengths[previous:])
        pieces_v.append(run_values[previous:])
        run_lengths = np.concatenate(pieces_l)
        run_values = np.concatenate(pieces_v)
    return num, run_lengths, run_values


def brush_rle_to_mask(rle: list[int] | np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush RLE to a (H, W) bool mask: pixels whose alpha byte is nonzero.

    Equals ``decode_rle(rle).reshape(height, width, 4)[:, :, 3] > 0`` of the SDK (values are stored as bytes, so a
    word wider than 8 bits counts by its low byte). Raises ``ValueError`` when the stream is invalid or does not
    hold exactly ``4 * height * width`` bytes.
    """
    num, lengths, values = decode_byte_runs(rle)
    expected = BYTES_PER_PIXEL * height * width
    if num != expected:
        raise ValueError(
            f"brush RLE holds {num} bytes but a {height}x{width} RGBA image needs {expected} (4 * height * width)"
        )
    ends = np.minimum(np.cumsum(lengths), num)
    starts = np.concatenate([[0], ends[:-1]])
    # Pixel i's alpha is byte 4i+3; the run [s, e) holds the alphas of pixels ceil((s-3)/4) .. ceil((e-3)/4)-1.
    first_pixel = -((3 - starts) // BYTES_PER_PIXEL)
    end_pixel = -((3 - ends) // BYTES_PER_PIXEL)
    counts = np.maximum(end_pixel - first_pixel, 0)
    foreground = (values & np.uint64(0xFF)) != 0
    return np.repeat(foreground, counts).reshape(height, width)
