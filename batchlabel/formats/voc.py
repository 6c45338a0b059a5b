"""Pascal VOC segmentation masks: palette PNGs of classes and of instances.

Layout written by :class:`VocWriter` under its root::

    JPEGImages/<name><suffix>                the images as they are (hard links or copies; the suffix is kept)
    SegmentationClass/<name>.png             palette PNG, pixel = class index (0 background, category id 1..K)
    SegmentationObject/<name>.png            palette PNG, pixel = instance index (0 background, 1..N)
    ImageSets/Segmentation/{train,val}.txt   one ``<name>`` per line
    class_names.txt                          ``background`` then the categories, line number = class index

Instances of an image are numbered 1..N in the order of its objects (the COCO annotation ids' order) and painted in
that order, so where two objects overlap the later one is on top. Objects without a mask (box-only) are not painted.
A PNG holds at most 255 classes / instances (index 255 is VOC's "void" and is never written).
The palette is VOC's own colour map (``bitget`` construction, as in the VOC devkit).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Largest class or instance index a uint8 palette PNG holds (255 is VOC's "void" border label).
MAX_INDEX = 254
SPLITS = ("train", "val")
#: zlib level of the PNGs: 1 is several times faster than Pillow's default 6 and index maps compress well anyway
#: (with zlib's run-length strategy, about 40 % smaller than the default strategy at the same speed)
PNG_COMPRESS_LEVEL = 1


def voc_palette(count: int = 256) -> np.ndarray:
    """(count, 3) uint8 RGB colour map of the VOC devkit: index 0 black, 1 dark red, 2 dark green, ..."""
    return _voc_palette(count).copy()


@functools.lru_cache(maxsize=4)
def _voc_palette(count: int) -> np.ndarray:
    palette = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (red, green, blue)
    return palette


def masks_to_voc_maps(
    masks: Sequence[np.ndarray],
    class_indices: Sequence[int],
    height: int,
    width: int,
    *,
    boxes_xywh: Sequence[Sequence[float]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance masks ((H, W) bool each) and their class indices (1..254) -> (class map, instance map), (H, W) uint8.

    Instance ``k`` (from 1) is ``masks[k - 1]``, painted in order (a later mask covers an earlier one). Raises
    ``ValueError`` for more than :data:`MAX_INDEX` masks or a class index out of range. ``boxes_xywh``: each mask's
    COCO ``bbox`` (pixel edges), when known: only that region is painted (faster; the mask must lie inside it).
    """
    if len(masks) != len(class_indices):
        raise ValueError(f"{len(masks)} masks but {len(class_indices)} class indices")
    if len(masks) > MAX_INDEX:
        raise ValueError(f"a VOC instance PNG holds at most {MAX_INDEX} objects, got {len(masks)}")
    classes = np.zeros((height, width), dtype=np.uint8)
    objects = np.zeros((height, width), dtype=np.uint8)
    for number, (mask, class_index) in enumerate(zip(masks, class_indices, strict=True), start=1):
        pixels, origin = np.asarray(mask, dtype=bool), (0, 0)
        if boxes_xywh is not None:
            x, y, w, h = boxes_xywh[number - 1]
            origin = (int(x), int(y))
            pixels = pixels[origin[1] : int(np.ceil(y + h)), origin[0] : int(np.ceil(x + w))]
        paint_voc_object(classes, objects, number, pixels, class_index, origin=origin)
    return classes, objects


def paint_voc_object(
    classes: np.ndarray,
    objects: np.ndarray,
    number: int,
    mask: np.ndarray,
    class_index: int,
    *,
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Paint instance ``number`` (1..254) of class ``class_index`` (1..254) into the (H, W) uint8 class and instance
    maps, over what is there. ``mask``: the object's (H, W) bool mask, or the (h, w) part of it whose top-left pixel
    is ``origin`` ``(x, y)`` (a crop to the object's box)."""
    if not 1 <= class_index <= MAX_INDEX:
        raise ValueError(f"class index must be in 1..{MAX_INDEX}, got {class_index}")
    if not 1 <= number <= MAX_INDEX:
        raise ValueError(f"a VOC instance PNG holds at most {MAX_INDEX} objects, got number {number}")
    pixels = np.asarray(mask, dtype=bool)
    x, y = origin
    region = (slice(y, y + pixels.shape[0]), slice(x, x + pixels.shape[1]))
    classes[region][pixels] = class_index
    objects[region][pixels] = number


def voc_object_map_to_masks(objects: np.ndarray) -> list[np.ndarray]:
    """Mirror of :func:`masks_to_voc_maps`' instance map: the visible (H, W) bool mask of instances 1..max."""
    array = np.asarray(objects)
    top = int(array[array != 255].max(initial=0))
    return [array == number for number in range(1, top + 1)]


def encode_palette_png(index_map: np.ndarray) -> bytes:
    """The bytes of a palette (mode ``P``) PNG of an (H, W) uint8 index map, with the VOC colour map."""
    import io

    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(index_map, dtype=np.uint8), mode="P")
    image.putpalette(_voc_palette(256).reshape(-1).tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=zlib.Z_RLE)
    return buffer.getvalue()


def write_palette_png(path: Path, index_map: np.ndarray) -> Path:
    """Save an (H, W) uint8 index map as a palette PNG (:func:`encode_palette_png`)."""
    Path(path).write_bytes(encode_palette_png(index_map))
    return Path(path)


def read_palette_png(path: Path) -> np.ndarray:
    """The (H, W) uint8 indices of a palette PNG (not its colours)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode != "P":
            raise ValueError(f"{path}: expected a palette (mode P) PNG, got mode {image.mode}")
        return np.asarray(image, dtype=np.uint8)


def voc_png_paths(root: Path, file_name: str) -> tuple[Path, Path]:
    """Where the class and the instance PNG of the image named ``file_name`` go under a VOC ``root``."""
    name = Path(file_name).stem
    return (Path(root) / "SegmentationClass" / f"{name}.png", Path(root) / "SegmentationObject" / f"{name}.png")


class VocWriter:
    """Writes one VOC-style segmentation dataset under ``root`` (created): the caller places each image at
    :meth:`image_path` and writes its PNGs at :func:`voc_png_paths` (any process may), then lists it with
    :meth:`add_image`; :meth:`close` finishes the image sets."""

    def __init__(self, root: Path, names: Sequence[str]) -> None:
        self.root = Path(root)
        for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "class_names.txt").write_text("".join(f"{name}\n" for name in ["background", *names]),
                                                   encoding="utf-8")
        self._sets = {split: (self.root / "ImageSets" / "Segmentation" / f"{split}.txt").open("w", encoding="utf-8")
                      for split in SPLITS}
        self.num_images = 0

    def image_path(self, file_name: str) -> Path:
        return self.root / "JPEGImages" / file_name

    def add_image(self, split: str, file_name: str) -> None:
        """List the image named ``file_name`` (its PNGs written) in ``split``'s image set."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self._sets[split].write(f"{Path(file_name).stem}\n")
        self.num_images += 1

    def close(self) -> None:
        for handle in self._sets.values():
            handle.close()
