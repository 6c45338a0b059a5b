"""Detector proposals stored beside the embeddings, so re-runs and serve's batch ``/predict`` never detect twice.

Layout::

    <cache.dir>/proposals/<sha256[:2]>/<sha256>.<key>.json

``key`` (:func:`proposals_key`) hashes the detector id (kind, model, weights digest), the queries (label -> class
names / prompts), the detection threshold and ``max_objects``: another detector, other classes or thresholds are
another entry. Writes are atomic (temp file + ``os.replace``); an unreadable entry is a miss and is removed.
Masks (SAM 3's) are stored as compressed COCO RLE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from batchlabel.annotate.detectors.base import Detection

log = logging.getLogger(__name__)

PROPOSALS_FORMAT = 1


def proposals_key(detector_id: str, queries: Mapping[str, Sequence[str]], min_score: float, max_objects: int) -> str:
    """16 hex digits naming what the proposals depend on (besides the image)."""
    blob = json.dumps(
        {"detector": detector_id, "queries": {k: list(v) for k, v in sorted(queries.items())},
         "min_score": round(float(min_score), 6), "max_objects": int(max_objects), "format": PROPOSALS_FORMAT},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ProposalStore:
    """Per-image detector proposals on disk (see the module docstring for the layout)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, image_sha256: str, key: str) -> Path:
        return self.root / image_sha256[:2] / f"{image_sha256}.{key}.json"

    def get(self, image_sha256: str, key: str) -> tuple[tuple[int, int], list[Detection]] | None:
        """((height, width) of the image detected on, its detections), or None when not stored."""
        from batchlabel.formats.coco_rle import coco_rle_to_mask

        path = self._path(image_sha256, key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            size = (int(data["image_size"][0]), int(data["image_size"][1]))
            detections = [
                Detection(str(d["label"]), tuple(float(v) for v in d["box_xyxy"]), float(d["score"]),  # type: ignore[arg-type]
                          None if d.get("mask") is None else coco_rle_to_mask(d["mask"]))
                for d in data["detections"]
            ]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s: unreadable stored proposals (%s); detecting again", path, error)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return size, detections

    def put(self, image_sha256: str, key: str, image_size: tuple[int, int], detections: Sequence[Detection],
            *, detector_id: str) -> None:
        """Store one image's detections (``image_size`` (height, width); boxes XYXY pixels of that image)."""
        from batchlabel.formats.coco_rle import mask_to_coco_rle

        path = self._path(image_sha256, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": PROPOSALS_FORMAT, "detector_id": detector_id, "image_size": list(image_size),
            "detections": [
                {"label": d.label, "box_xyxy": [round(v, 2) for v in d.box_xyxy], "score": round(d.score, 5),
                 "mask": None if d.mask is None else mask_to_coco_rle(d.mask)}
                for d in detections
            ],
        }
        fd, tmp = tempfile.mkstemp(prefix=".proposals-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
