"""A class no COCO detector knows: a ring with a cross through it, pasted on natural photos (scikit-image's).

Used by the training tests and ``benchmarks/train.py`` (so it needs only numpy, Pillow and scikit-image). Every
image is deterministic for a seed. Boxes are XYXY pixels of the image (x2, y2 exclusive edges); masks are (H, W)
bool in image space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: scikit-image photos used as backgrounds (all ship inside its wheel).
BACKGROUNDS = ("chelsea", "astronaut", "coffee", "rocket", "camera", "coins", "immunohistochemistry", "cat")
SHAPE_LABEL = "ringcross"


@dataclass(frozen=True)
class SyntheticImage:
    """One image: ``rgb`` HWC uint8; ``boxes`` XYXY pixels (float); ``masks`` (H, W) bool, one per box."""

    name: str
    rgb: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]
    masks: tuple[np.ndarray, ...]


def ring_with_cross(size: int) -> np.ndarray:
    """A (size, size) bool mask: a ring (outer radius size/2, width size/7) and a cross of bars size/8 wide."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centre = size / 2
    radius = np.hypot(xx - centre, yy - centre)
    ring = (radius <= centre) & (radius >= centre - size / 7)
    half_bar = size / 16
    cross = ((np.abs(xx - centre) <= half_bar) | (np.abs(yy - centre) <= half_bar)) & (radius <= centre)
    return ring | cross


def _backgrounds() -> list[np.ndarray]:
    import skimage.data

    found = []
    for name in BACKGROUNDS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        image = np.asarray(loader())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        found.append(image[..., :3].astype(np.uint8))
    return found


def synthesise(count: int, *, seed: int = 0, size_hw: tuple[int, int] = (240, 320),
               objects: tuple[int, int] = (1, 2), empty_every: int = 0) -> list[SyntheticImage]:
    """``count`` images of ``size_hw``: a random crop of a photo with ``objects`` (min, max) shapes pasted on it in
    random saturated colours, 36..80 px wide, not overlapping. ``empty_every`` > 0: every such image has none."""
    rng = np.random.default_rng(seed)
    photos = _backgrounds()
    height, width = size_hw
    made = []
    for index in range(count):
        photo = photos[index % len(photos)]
        scale = max(height / photo.shape[0], width / photo.shape[1]) * rng.uniform(1.0, 1.5)
        resized = np.asarray(Image.fromarray(photo).resize(
            (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale)))))
        top = int(rng.integers(0, resized.shape[0] - height + 1))
        left = int(rng.integers(0, resized.shape[1] - width + 1))
        rgb = resized[top:top + height, left:left + width].copy()
        boxes: list[tuple[float, float, float, float]] = []
        masks: list[np.ndarray] = []
        wanted = 0 if empty_every and index % empty_every == empty_every - 1 else int(
            rng.integers(objects[0], objects[1] + 1))
        for _ in range(50):
            if len(boxes) >= wanted:
                break
            size = int(rng.integers(36, 81))
            x = int(rng.integers(0, width - size))
            y = int(rng.integers(0, height - size))
            box = (float(x), float(y), float(x + size), float(y + size))
            if any(_overlaps(box, other) for other in boxes):
                continue
            shape = ring_with_cross(size)
            colour = np.asarray(_saturated(rng), dtype=np.uint8)
            rgb[y:y + size, x:x + size][shape] = colour
            mask = np.zeros((height, width), dtype=bool)
            mask[y:y + size, x:x + size] = shape
            boxes.append(box)
            masks.append(mask)
        made.append(SyntheticImage(f"synthetic_{index:03d}", rgb, tuple(boxes), tuple(masks)))
    return made


def _overlaps(a: Sequence[float], b: Sequence[float], margin: float = 4.0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _saturated(rng: np.random.Generator) -> tuple[int, int, int]:
    channels = [255, int(rng.integers(0, 90)), int(rng.integers(0, 256))]
    order = rng.permutation(3)
    return (channels[order[0]], channels[order[1]], channels[order[2]])


def write_images(images: Sequence[SyntheticImage], folder: Path) -> list[Path]:
    """Each image as ``folder/<name>.png``; returns the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for image in images:
        path = folder / f"{image.name}.png"
        Image.fromarray(image.rgb).save(path)
        paths.append(path)
    return paths


def write_yolo_folder(images: Sequence[SyntheticImage], root: Path, *, val_every: int = 4) -> Path:
    """An Ultralytics detect dataset (``images/{train,val}``, ``labels/{train,val}``: ``class cx cy w h``
    normalised) with one class; every ``val_every``-th image goes to val. Returns ``root / "data.yaml"``."""
    for index, image in enumerate(images):
        split = "val" if index % val_every == val_every - 1 else "train"
        write_images([image], root / "images" / split)
        height, width = image.rgb.shape[:2]
        lines = [f"0 {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                 f"{(y2 - y1) / height:.6f}" for x1, y1, x2, y2 in image.boxes]
        label_dir = root / "labels" / split
        label_dir.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{image.name}.txt").write_text("".join(line + "\n" for line in lines))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: {SHAPE_LABEL}\n")
    return data_yaml


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two XYXY boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recall_precision(truth: Sequence[Sequence[Sequence[float]]], found: Sequence[Sequence[Sequence[float]]],
                     *, iou: float = 0.5) -> tuple[float, float]:
    """Greedy one-to-one matching per image at box IoU >= ``iou``: (recall, precision) over all images."""
    matched = total_truth = total_found = 0
    for true_boxes, found_boxes in zip(truth, found, strict=True):
        total_truth += len(true_boxes)
        total_found += len(found_boxes)
        free = list(range(len(true_boxes)))
        for box in found_boxes:
            best = max(free, key=lambda i: box_iou(box, true_boxes[i]), default=None)
            if best is not None and box_iou(box, true_boxes[best]) >= iou:
                matched += 1
                free.remove(best)
    recall = matched / total_truth if total_truth else 1.0
    precision = matched / total_found if total_found else 1.0
    return recall, precision
