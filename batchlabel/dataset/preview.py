"""Look before training: PNG overlays of a built dataset's masks, boxes and labels, and a contact sheet.

Overlays are drawn on the image after EXIF orientation (the frame the COCO coordinates are in), so a mask that does
not sit on its object in the preview is wrong in the dataset too. Files: ``DIR/previews/<image id>.png`` and
``DIR/previews/contact_sheet.png``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.dataset.ls_export import DatasetError

log = logging.getLogger(__name__)

#: Thumbnail edge in the contact sheet, pixels.
THUMBNAIL_PX = 256
#: Mask fill opacity.
MASK_ALPHA = 0.45
_PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0),
], dtype=np.uint8)


def category_colour(category_id: int) -> tuple[int, int, int]:
    """RGB colour of a category id (stable across previews)."""
    r, g, b = _PALETTE[(category_id - 1) % len(_PALETTE)]
    return int(r), int(g), int(b)


def render_overlay(rgb: np.ndarray, image: dict[str, Any], names: dict[int, str]) -> np.ndarray:
    """Draw ``image["annotations"]`` on an (H, W, 3) uint8 RGB array: filled masks, box outlines, label names."""
    from PIL import Image, ImageDraw

    from batchlabel.formats.coco import segmentation_to_mask

    height, width = rgb.shape[:2]
    canvas = rgb.astype(np.float32)
    for annotation in image["annotations"]:
        mask = segmentation_to_mask(annotation["segmentation"], height, width)
        if mask is not None and mask.shape == (height, width):
            tint = np.array(category_colour(annotation["category_id"]), dtype=np.float32)
            canvas[mask] = canvas[mask] * (1 - MASK_ALPHA) + tint * MASK_ALPHA
    picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    line = max(1, round(max(height, width) / 400))
    for annotation in image["annotations"]:
        x, y, w, h = annotation["bbox"]
        colour = category_colour(annotation["category_id"])
        dashed = not annotation["segmentation"]
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=line * (2 if dashed else 1))
        text = names.get(annotation["category_id"], str(annotation["category_id"])) + (" (box)" if dashed else "")
        left, top, right, bottom = draw.textbbox((x, y), text)
        label_y = max(0.0, y - (bottom - top) - 2)
        draw.rectangle([x, label_y, x + (right - left) + 4, label_y + (bottom - top) + 2], fill=colour)
        draw.text((x + 2, label_y), text, fill=(0, 0, 0))
    return np.asarray(picture)


def contact_sheet(paths: list[Path], out: Path, *, thumbnail_px: int = THUMBNAIL_PX) -> Path:
    """Tile PNGs into one grid image (about square), each fitted into a ``thumbnail_px`` square."""
    from PIL import Image

    columns = max(1, math.ceil(math.sqrt(len(paths))))
    rows = max(1, math.ceil(len(paths) / columns))
    sheet = Image.new("RGB", (columns * thumbnail_px, rows * thumbnail_px), (32, 32, 32))
    for index, path in enumerate(paths):
        with Image.open(path) as picture:
            picture.thumbnail((thumbnail_px, thumbnail_px))
            row, column = divmod(index, columns)
            offset = ((thumbnail_px - picture.width) // 2, (thumbnail_px - picture.height) // 2)
            sheet.paste(picture.convert("RGB"), (column * thumbnail_px + offset[0], row * thumbnail_px + offset[1]))
    sheet.save(out)
    return out


def iter_dataset_images(dataset_dir: Path, split: str = "all", *, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` ``images`` entries of ``annotations/<split>.json``, each with its ``annotations`` list.

    Streams the file twice (images, then annotations), so memory is bounded by ``limit`` images' annotations.
    """
    import ijson

    path = Path(dataset_dir) / "annotations" / f"{split}.json"
    try:
        with path.open("rb") as handle:
            images = []
            for image in ijson.items(handle, "images.item", use_float=True):
                images.append({**image, "annotations": []})
                if limit is not None and len(images) >= limit:
                    break
        by_id = {image["id"]: image for image in images}
        with path.open("rb") as handle:
            for annotation in ijson.items(handle, "annotations.item", use_float=True):
                image = by_id.get(annotation.get("image_id"))
                if image is not None:
                    image["annotations"].append(annotation)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror}); is {dataset_dir} a built dataset?") from None
    except ijson.JSONError as error:
        raise DatasetError(f"{path}: not valid COCO JSON: {error}") from None
    return images


def render_previews(dataset_dir: Path, *, limit: int = 16, split: str = "all") -> list[Path]:
    """Render overlays of the first ``limit`` images of ``annotations/<split>.json`` and a contact sheet.

    Returns the overlay paths followed by the contact sheet's path (empty when the dataset has no images).
    """
    from PIL import Image, ImageOps

    dataset_dir = Path(dataset_dir)
    images = iter_dataset_images(dataset_dir, split, limit=limit)
    names = _category_names(dataset_dir / "annotations" / f"{split}.json")
    out_dir = dataset_dir / "previews"
    out_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    for image in images:
        path = dataset_dir / "images" / image["file_name"]
        try:
            with Image.open(path) as opened:
                rgb = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        except OSError as error:
            raise DatasetError(f"image {image['id']}: cannot read {path}: {error}") from None
        if rgb.shape[:2] != (image["height"], image["width"]):
            log.warning("image %s: %s is %dx%d but the dataset says %dx%d", image["id"], path, rgb.shape[1],
                        rgb.shape[0], image["width"], image["height"])
        target = out_dir / f"{image['id']}.png"
        Image.fromarray(render_overlay(rgb, image, names)).save(target)
        written.append(target)
    if written:
        written.append(contact_sheet(written, out_dir / "contact_sheet.png"))
    log.info("%d previews in %s", len(written), out_dir)
    return written


def _category_names(path: Path) -> dict[int, str]:
    import ijson

    with path.open("rb") as handle:
        return {int(c["id"]): str(c["name"]) for c in ijson.items(handle, "categories.item")}
