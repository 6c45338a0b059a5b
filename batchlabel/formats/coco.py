"""Writing COCO instance-segmentation JSON files as a stream, and reading an entry's ``segmentation`` back as a mask.

A file is written in two phases, ``images`` then ``annotations``, one entry at a time, so a dataset of any size is
written with memory bounded by one image's annotations. The layout is the standard COCO one::

    {"info": {...}, "licenses": [], "categories": [{"id": 1, "name": ...}, ...],
     "images": [{"id", "file_name", "width", "height"}, ...],
     "annotations": [{"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"}, ...]}

Output is deterministic: the same inputs give byte-identical files (no timestamps; those live in the manifest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

_SEPARATORS = (",", ":")


def categories_for(labels: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories for labels in label-config order: ids from 1."""
    return [{"id": index + 1, "name": label, "supercategory": "object"} for index, label in enumerate(labels)]


def coco_image(image_id: int, file_name: str, width: int, height: int) -> dict[str, Any]:
    """A COCO ``images`` entry; ``file_name`` is relative to the dataset's ``images/`` folder (POSIX)."""
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def encode_entry(entry: dict[str, Any] | None) -> str:
    """The compact JSON text of one ``images`` or ``annotations`` entry, as :class:`CocoWriter` writes it."""
    return json.dumps(entry, separators=_SEPARATORS)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """(H, W) bool mask of a COCO ``segmentation`` (RLE dict, or polygon lists rasterised by pycocotools with the
    parts unioned); ``None`` for a box-only object (``[]``)."""
    if isinstance(segmentation, dict):
        from batchlabel.formats.coco_rle import coco_rle_to_mask

        return coco_rle_to_mask(segmentation)
    if not any(len(polygon) >= 6 for polygon in segmentation or []):
        return None
    from batchlabel.formats.coco_polygon import coco_polygons_to_mask

    return coco_polygons_to_mask(segmentation, height, width)


class CocoWriter:
    """Streams one COCO JSON file: :meth:`add_image` for every image, then :meth:`add_annotation` for every object.

    Use as a context manager; the file is complete (valid JSON) once the block exits without error.
    """

    def __init__(self, path: Path, *, categories: list[dict[str, Any]], info: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._phase = "images"
        self._first = True
        self.num_images = 0
        self.num_annotations = 0
        head = {"info": info, "licenses": [], "categories": categories}
        self._file.write(json.dumps(head, separators=_SEPARATORS)[:-1] + ',"images":[')

    def add_image(self, image: dict[str, Any]) -> None:
        if self._phase != "images":
            raise RuntimeError(f"{self.path}: images must all be written before the first annotation")
        self._write(image)
        self.num_images += 1

    def add_annotation(self, annotation: dict[str, Any] | None, *, encoded: str | None = None) -> None:
        """Write one annotation: the dict, or ``encoded``, its :func:`encode_entry` text (one encoding written to
        several files)."""
        if self._phase == "images":
            self._file.write('],"annotations":[')
            self._phase = "annotations"
            self._first = True
        self._write(annotation, encoded)
        self.num_annotations += 1

    def _write(self, entry: dict[str, Any] | None, encoded: str | None = None) -> None:
        if not self._first:
            self._file.write(",")
        self._first = False
        self._file.write(encode_entry(entry) if encoded is None else encoded)

    def close(self) -> None:
        if self._file.closed:
            return
        if self._phase == "images":
            self._file.write('],"annotations":[')
        self._file.write("]}\n")
        self._file.close()

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._file.close()
