"""Detector proposals stored beside the embeddings, so re-runs and serve's batch ``/predict`` never detect twice.

Layout::

    <cache.dir>/proposals/<sha256[:2]>/<sha256>.<key>.json

``key`` (:func:`proposals_key`) hashes the detector id (kind, model, weights digest), the queries (label -> class
names / prompts), the detection threshold and ``max_objects``: another detector, other classes or thresholds are
another entry. Writes are atomic (temp file + ``os.replace``); a write that fails is a warning (the detections are
used all the same, detected again next time). :meth:`ProposalStore.get` is the one validated read: a damaged entry
is a warning, removed, a miss. Masks (SAM 3's) are stored as compressed COCO RLE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from batchlabel.annotate.detectors.base import Detection
from batchlabel.infer.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

PROPOSALS_FORMAT = 1
#: An entry larger than this is corrupt (bytes; a real one is a few KB, SAM 3's masks as RLE included).
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def proposals_key(detector_id: str, queries: Mapping[str, Sequence[str]], min_score: float, max_objects: int) -> str:
    """16 hex digits naming what the proposals depend on (besides the image)."""
    blob = json.dumps(
        {"detector": detector_id, "queries": {k: list(v) for k, v in sorted(queries.items())},
         "min_score": round(float(min_score), 6), "max_objects": int(max_objects), "format": PROPOSALS_FORMAT},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ProposalStore:
    """Per-image detector proposals on disk (see the module docstring for the layout).

    Args:
        root: ``<cache.dir>/proposals``.
        max_pixels: an entry claiming a larger image is corrupt (the image loader's decompression-bomb limit).
    """

    def __init__(self, root: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.root = Path(root)
        self.max_pixels = int(max_pixels)

    def _path(self, image_sha256: str, key: str) -> Path:
        return self.root / image_sha256[:2] / f"{image_sha256}.{key}.json"

    def get(self, image_sha256: str, key: str) -> tuple[tuple[int, int], list[Detection]] | None:
        """((height, width) of the image detected on, its detections: boxes XYXY pixels of that image), or None.

        The one validated read of the proposals: an entry that cannot be read or decoded (a folder, garbled or
        over-nested JSON, over :data:`MAX_ENTRY_BYTES`) or that is inconsistent (image size not two positive ints or
        over ``max_pixels``; a detection whose label is not text, whose box is not 4 finite numbers ordered and near
        the image, whose score is not in [0, 1], whose mask is not a COCO RLE of the image's size) is logged once,
        removed and reported as a miss, so the caller detects again.
        """
        path = self._path(image_sha256, key)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as error:  # IsADirectoryError, PermissionError, EIO
            self._discard(path, error)
            return None
        try:
            if len(data) > MAX_ENTRY_BYTES:
                raise ValueError(f"over {MAX_ENTRY_BYTES:,} bytes")
            return self._entry(json.loads(data.decode("utf-8")))
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as error:
            # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            self._discard(path, error)
            return None

    def _entry(self, data: object) -> tuple[tuple[int, int], list[Detection]]:
        """A decoded entry -> (image size, detections); ``ValueError`` naming what is wrong."""
        from batchlabel.formats.coco_rle import coco_rle_to_mask
        from batchlabel.infer.store import size_pair

        if not isinstance(data, dict):
            raise ValueError(f"the entry is a {type(data).__name__}, expected an object")
        if data.get("format") != PROPOSALS_FORMAT:
            raise ValueError(f"format {data.get('format')!r:.40}, expected {PROPOSALS_FORMAT}")
        size = size_pair(data["image_size"], "image_size")
        if size[0] * size[1] > self.max_pixels:
            raise ValueError(f"image_size {size} is over the pixel limit {self.max_pixels:,}")
        stored = data["detections"]
        if not isinstance(stored, list):
            raise ValueError(f"detections is a {type(stored).__name__}, expected a list")
        detections = []
        for index, item in enumerate(stored):
            if not isinstance(item, dict):
                raise ValueError(f"detection {index} is a {type(item).__name__}, expected an object")
            label, score, mask = item["label"], item["score"], item.get("mask")
            if not isinstance(label, str) or not label:
                raise ValueError(f"detection {index}: label {label!r:.40} is not text")
            if not _is_number(score) or not 0.0 <= score <= 1.0:
                raise ValueError(f"detection {index}: score {score!r:.40} is not a number in [0, 1]")
            box = _box(item["box_xyxy"], size, index)
            if mask is not None:
                if not isinstance(mask, dict) or mask.get("size") != list(size):
                    raise ValueError(f"detection {index}: mask is not a COCO RLE of size {list(size)}")
                mask = coco_rle_to_mask(mask)
            detections.append(Detection(label, box, float(score), mask))
        return size, detections

    @staticmethod
    def _discard(path: Path, error: BaseException) -> None:
        """Log the bad entry once and remove it (a folder in its place too), so the image is detected again."""
        reason = " ".join(f"{error.__class__.__name__}: {error}".split())[:200]
        log.warning("%s: corrupt stored proposals (%s); removing them, the image is detected again", path, reason)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def put(self, image_sha256: str, key: str, image_size: tuple[int, int], detections: Sequence[Detection],
            *, detector_id: str) -> None:
        """Store one image's detections (``image_size`` (height, width); boxes XYXY pixels of that image)."""
        from batchlabel.formats.coco_rle import mask_to_coco_rle

        path = self._path(image_sha256, key)
        data = {
            "format": PROPOSALS_FORMAT, "detector_id": detector_id, "image_size": list(image_size),
            "detections": [
                {"label": d.label, "box_xyxy": [round(v, 2) for v in d.box_xyxy], "score": round(d.score, 5),
                 "mask": None if d.mask is None else mask_to_coco_rle(d.mask)}
                for d in detections
            ],
        }
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".proposals-", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        except OSError as error:  # a full disk, a folder in the entry's place: detected again next time
            log.warning("%s: cannot store the proposals (%s); they are used now and detected again next time",
                        path, error)
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


def _is_number(value: object) -> bool:
    """A finite JSON number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _box(value: object, size: tuple[int, int], index: int) -> tuple[float, float, float, float]:
    """A stored ``box_xyxy``: 4 finite numbers, x1 <= x2 and y1 <= y2, within the image of ``size`` (height,
    width) grown by its own size on every side (detectors clip to the image; this only refuses nonsense)."""
    if not isinstance(value, list) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise ValueError(f"detection {index}: box_xyxy {value!r:.80} is not 4 finite numbers")
    x1, y1, x2, y2 = (float(v) for v in value)
    height, width = size
    if not (x1 <= x2 and y1 <= y2 and -width <= x1 and x2 <= 2 * width and -height <= y1 and y2 <= 2 * height):
        raise ValueError(f"detection {index}: box_xyxy {value!r:.80} is not a box on a {width}x{height} image")
    return x1, y1, x2, y2
