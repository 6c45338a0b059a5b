"""A folder of real good and bad image files (made with Pillow, no mocks) for the infer tests."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageZoo:
    """Files in ``root``: ``good`` (name -> expected (H, W) after orientation) and ``bad`` (name -> reason fragment)."""

    root: Path
    good: dict[str, tuple[int, int]]
    bad: dict[str, str]

    def paths(self) -> list[Path]:
        return sorted(self.root / name for name in [*self.good, *self.bad])


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` 8-bit gray pixels (900 M by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    data = compressor.compress(row * 4) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def make_image_zoo(root: Path) -> ImageZoo:
    """Write the acceptance set: good RGB / EXIF-rotated / 16-bit / CMYK images and every kind of bad file."""
    from PIL import Image
    from skimage import data

    root.mkdir(parents=True, exist_ok=True)
    cat = data.chelsea()  # (300, 451, 3) uint8, non-square
    small = np.ascontiguousarray(cat[::4, ::4])  # (75, 113, 3)
    Image.fromarray(small).save(root / "cat.jpg", quality=95)

    rotated = Image.fromarray(small)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated.save(root / "rotated.jpg", quality=95, exif=exif)

    ramp = (np.arange(60 * 80, dtype=np.uint32).reshape(60, 80) * 65535 // (60 * 80 - 1)).astype(np.uint16)
    Image.fromarray(ramp).save(root / "gray16.png")  # mode I;16
    Image.fromarray(small).convert("CMYK").save(root / "cmyk.jpg", quality=95)

    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("these are my notes, not a picture\n")
    full = (root / "cat.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 2])
    png = (root / "gray16.png").read_bytes()
    (root / "corrupt.png").write_bytes(png[:33] + bytes(range(256)) * 4)
    (root / "bomb.png").write_bytes(bomb_png())
    return ImageZoo(
        root=root,
        good={"cat.jpg": (75, 113), "rotated.jpg": (113, 75), "gray16.png": (60, 80), "cmyk.jpg": (75, 113)},
        bad={
            "empty.jpg": "empty file",
            "notes.jpg": "not a recognised image format",
            "truncated.jpg": "truncated",
            "corrupt.png": "corrupt",
            "bomb.png": "decompression bomb",
        },
    )


