"""The detector interface of ``preannotate.mode: detect``: a batch of images in, labelled boxes (and masks) out.

A detector is built for one set of *queries*: project label -> the detector's own class names (closed vocabulary,
e.g. YOLO's ``dining table``) or text prompts (open vocabulary, e.g. SAM 3). Every :class:`Detection` carries the
project label, never the detector's name for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class DetectorError(ValueError):
    """A detector problem a user can act on; the message names the key or file and what was expected."""


class DetectorUnavailableError(DetectorError):
    """The detector cannot be loaded: checkpoint missing, optional extra not installed, unreadable model files."""


class NoTrainedModelError(DetectorUnavailableError):
    """``preannotate.detector.model: trained`` before ``batchlabel train`` published a model for the project."""


class UnknownClassError(DetectorError):
    """A class name a closed-vocabulary detector does not know; the message lists the detector's classes."""


@dataclass(frozen=True)
class Detection:
    """One object found in one image.

    Attributes:
        label: the project label (a key of the queries).
        box_xyxy: (x1, y1, x2, y2) pixels of the image as given (HWC, EXIF-oriented).
        score: the detector's confidence in [0, 1].
        mask: (H, W) bool at the image's size when the detector gives masks (SAM 3), else None.
    """

    label: str
    box_xyxy: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None = None


class Detector(Protocol):
    """What mode ``detect`` needs of a detector.

    Attributes:
        kind: ``"ultralytics"`` or ``"sam3"``.
        detector_id: kind, model name and weights digest (e.g. ``ultralytics:yolo11n@0ebbc80d``): part of the
            prediction's ``model_version`` and of the stored proposals' key.
        queries: label -> class names / prompts this detector was built for.
        slow_on_cpu_s: typical seconds per image on a CPU (for an honest ETA), 0 when fast.
    """

    kind: str
    detector_id: str
    queries: Mapping[str, tuple[str, ...]]
    slow_on_cpu_s: float

    def detect(self, images: Sequence[np.ndarray], *, min_score: float) -> list[list[Detection]]:
        """Objects in each HWC uint8 RGB image (one list per image, in order) with confidence >= ``min_score``."""
        ...


def file_digest(path: str, *, chars: int = 8) -> str:
    """The first ``chars`` hex digits of a file's sha256 (a weights file's identity in ``detector_id``)."""
    from batchlabel.infer.images import file_sha256

    return file_sha256(path)[:chars]
