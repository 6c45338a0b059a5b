"""Image files -> oriented RGB arrays, with a one-line reason for every file that cannot be used.

The image space of batchlabel is the image **after EXIF orientation** (what Label Studio displays), so
:func:`load_image` applies the EXIF orientation tag and records it. Every Pillow mode is converted to 8-bit RGB:

- ``1`` / ``L`` / ``P`` / ``CMYK`` / ``YCbCr`` / ``LAB`` / ``HSV``: Pillow's own conversion to RGB.
- ``RGBA`` / ``LA`` / ``PA`` / ``P`` with transparency: composited over white (Label Studio shows transparent pixels
  on a light background; the colour under alpha 0 is often garbage).
- ``I;16`` (16-bit grayscale) and ``I`` with values in 0..65535: scaled by 255/65535 (``round(v / 257)``), not clipped
  (``I`` holding only 0..255 is kept as is). ``I`` beyond 16 bits and ``F``: min-max stretched to 0..255.

Decompression bombs are refused per call: an image with more than ``max_pixels`` pixels is an error, decided from the
header before any pixel is decoded (Pillow's own ``DecompressionBombWarning`` is turned into the same error).
Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left off).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
HASH_CHUNK_BYTES = 1 << 20

# Image.open consults the process-wide Image.MAX_IMAGE_PIXELS; opening under this lock with the limit set for the
# call makes the limit per call for batchlabel's loader threads. Only the header parse happens under the lock.
_OPEN_LOCK = threading.Lock()


class ImageLoadError(Exception):
    """An image file that cannot be used. ``reason`` is one line a user can act on."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image in batchlabel's image space.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB, C-contiguous, *after* EXIF orientation (read-only).
        exif_orientation: the EXIF orientation tag (1-8) that was applied; 1 = none or absent.
        sha256: hex sha256 of the file's bytes (the content address of its embedding).
        path: where it was read from (or the name given to :func:`load_image_bytes`).
    """

    rgb: np.ndarray
    exif_orientation: int
    sha256: str
    path: Path

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.rgb.flags.writeable:
            self.rgb.flags.writeable = False

    @property
    def original_size(self) -> tuple[int, int]:
        """``(height, width)`` after EXIF orientation."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ReadImage:
    """A file's bytes read once, with their hex sha256: whoever decodes ``data`` embeds exactly the bytes ``sha256``
    names (the ingestion pipeline journals this hash and hands the bytes to the encoder)."""

    path: Path
    data: bytes
    sha256: str


def read_image_file(path: str | os.PathLike[str]) -> ReadImage:
    """Read ``path`` whole and hash it, once (raises ``OSError``, ``FileNotFoundError`` for a missing file)."""
    data = Path(path).read_bytes()
    return ReadImage(Path(path), data, hashlib.sha256(data).hexdigest())


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read, hash, decode and orient one image file.

    Raises:
        ImageLoadError: unreadable, empty, not an image, truncated, corrupt, or more than ``max_pixels`` pixels.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory, expected an image file") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file: {exc.strerror or exc}") from None
    return load_image_bytes(data, name=path, max_pixels=max_pixels)


def load_image_bytes(
    data: bytes, *, name: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS, sha256: str | None = None
) -> LoadedImage:
    """Decode an image held in memory (``name`` is used in errors and as :attr:`LoadedImage.path`).

    ``sha256``: the hex sha256 of ``data`` when the caller already computed it (not hashed again).

    Raises:
        ImageLoadError: as :func:`load_image`.
    """
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    rgb, orientation = decode_rgb(data, name=name, max_pixels=max_pixels)
    return LoadedImage(rgb=rgb, exif_orientation=orientation, sha256=sha256, path=Path(name))


def decode_rgb(
    data: bytes, *, name: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, int]:
    """Decode image bytes to ``((H, W, 3) uint8 RGB after EXIF orientation, orientation tag 1-8)``."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on in this process; truncated images may load")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                image = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        reason = f"refused as a possible decompression bomb: more than {max_pixels:,} pixels"
        raise ImageLoadError(name, reason) from None
    except UnidentifiedImageError:
        kind = _signature(data)
        if kind is not None:
            raise ImageLoadError(name, f"corrupt {kind} file: its header cannot be read") from None
        raise ImageLoadError(name, "not a recognised image format") from None  # never echo the file's bytes
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(name, f"corrupt image header: {exc}") from None

    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageLoadError(name, f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageLoadError(
                name,
                f"refused as a possible decompression bomb: {width}x{height} = {width * height:,} pixels "
                f"exceeds the limit of {max_pixels:,}",
            )
        try:
            image.load()
            orientation = _exif_orientation(image)
            oriented = ImageOps.exif_transpose(image) if orientation != 1 else image
            rgb = to_rgb_array(oriented)
        except OSError as exc:
            message = str(exc)
            if "truncated" in message:
                raise ImageLoadError(name, f"truncated image file ({message})") from None
            raise ImageLoadError(name, f"corrupt image data: {message}") from None
        except (SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
            raise ImageLoadError(name, f"corrupt image data: {exc.__class__.__name__}: {exc}") from None
    return rgb, orientation


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _signature(data: bytes) -> str | None:
    """The image format a file's magic bytes claim, if any (to tell a corrupt image from a non-image)."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def _exif_orientation(image: object) -> int:
    try:
        value = int(image.getexif().get(0x0112, 1))  # type: ignore[attr-defined]
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _over_white(image: object) -> np.ndarray:
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)  # type: ignore[attr-defined]
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def to_rgb_array(image: object) -> np.ndarray:
    """Convert a loaded PIL image of any mode to ``(H, W, 3)`` uint8 RGB (see the module docstring for the rules)."""
    mode = image.mode  # type: ignore[attr-defined]
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):  # type: ignore[attr-defined]
        return _over_white(image)
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image)
        gray = _scale_to_uint8(values, sixteen_bit=mode.startswith("I;16"))
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))  # type: ignore[attr-defined]


def _scale_to_uint8(values: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """16-bit range -> 8-bit by 255/65535; wider integer or float data min-max stretched. Returns ``(H, W)`` uint8."""
    values = values.astype(np.float64)
    if values.ndim == 3:
        values = values[..., 0]
    low, high = float(values.min()), float(values.max())
    integral = bool(np.all(values == np.floor(values)))
    if not sixteen_bit and integral and low >= 0 and high <= 255:
        scaled = values  # 8-bit data held in a 32-bit mode
    elif sixteen_bit or (integral and low >= 0 and high <= 65535):
        scaled = values * (255.0 / 65535.0)
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
