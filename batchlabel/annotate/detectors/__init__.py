"""Detectors for ``preannotate.mode: detect`` (one module per kind; the interface is :mod:`.base`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from batchlabel.annotate.detectors.base import Detection, Detector, DetectorError, DetectorUnavailableError

if TYPE_CHECKING:
    from batchlabel.config import DetectorConfig

__all__ = ["Detection", "Detector", "DetectorError", "DetectorUnavailableError", "infer_kind", "load_detector"]


def infer_kind(model: str) -> str:
    """``kind: auto``: a ``.pt``/``.pth`` file -> ``ultralytics``; anything else (a directory, a hub id) -> ``sam3``."""
    return "ultralytics" if Path(model).suffix in (".pt", ".pth") else "sam3"


def load_detector(config: DetectorConfig, labels: tuple[str, ...], *, cache_dir: Path, device: str,
                  name: str | None = None) -> Detector:
    """The configured detector for the project's ``labels`` (``classes`` maps labels to names; default: the label).
    ``name``: what the detector id calls the weights (default: the file's stem; a trained model's version).

    Raises:
        DetectorUnavailableError: checkpoint missing, extra not installed, unreadable model.
        UnknownClassError: a class name the (closed-vocabulary) detector does not know; lists its classes.
    """
    kind = infer_kind(config.model) if config.kind == "auto" else config.kind
    queries = config.names_for(labels)
    if kind == "ultralytics":
        from batchlabel.annotate.detectors.ultralytics import UltralyticsDetector

        return UltralyticsDetector(Path(config.model), queries, settings_dir=cache_dir / "ultralytics",
                                   device=device, max_objects=config.max_objects, name=name)
    from batchlabel.annotate.detectors.sam3 import Sam3Detector

    return Sam3Detector(config.model, queries, device=device, max_objects=config.max_objects)
