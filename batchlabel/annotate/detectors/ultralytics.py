"""Ultralytics checkpoints (YOLO, RT-DETR ``.pt``) as a closed-vocabulary :class:`~.base.Detector`.

Ultralytics is AGPL-3.0: it is the optional extra ``batchlabel[ultralytics]``, imported only here and only when a
config asks for it. It runs offline: ``YOLO_OFFLINE=1`` (no DNS look-ups, no update checks) and its settings under
batchlabel's cache (``YOLO_CONFIG_DIR``), set before its first import; its plotting (which downloads a font) is never
called. Boxes come from the detector; masks are left to SAM's decoder (``Detection.mask`` is None).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.annotate.detectors.base import (
    Detection,
    DetectorUnavailableError,
    UnknownClassError,
    file_digest,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'batchlabel[ultralytics]' (or `make install`, which installs it for the tests)"


def import_yolo(settings_dir: Path) -> Any:
    """Import Ultralytics' ``YOLO`` offline and without side effects on the rest of the process.

    Its import replaces ``PIL.Image.open`` process-wide with a wrapper that, on any file Pillow cannot identify,
    tries to pip-install and import ``pi-heif`` (so a text file named ``.jpg`` became "No module named 'pi_heif'" in
    batchlabel's own image loader, and the machine ran pip). ``Image.open`` is put back after the import and
    ``YOLO_AUTOINSTALL`` is off: batchlabel never installs packages at run time.
    """
    from PIL import Image

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")  # its logger prints to stdout (would break `run --json`)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    settings_dir.mkdir(parents=True, exist_ok=True)
    pillow_open = Image.open
    try:
        from ultralytics import YOLO
    except ImportError as error:
        raise DetectorUnavailableError(
            f"preannotate.detector.kind: ultralytics needs the optional extra ({error.name or error} is not "
            f"installed): {INSTALL_HINT}"
        ) from None
    finally:
        Image.open = pillow_open  # type: ignore[assignment]
    return YOLO


class UltralyticsDetector:
    """A YOLO/RT-DETR checkpoint; ``queries`` map labels to its class names (``model.names``).

    Args:
        checkpoint: the ``.pt`` file.
        queries: label -> the checkpoint's class names; an unknown name raises :class:`UnknownClassError`
            listing the checkpoint's classes.
        settings_dir: Ultralytics' settings folder (under batchlabel's cache).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        max_objects: at most this many boxes per image (``max_det``).
        name: what ``detector_id`` calls the weights (default: the file's stem; a trained model's version).
    """

    kind = "ultralytics"
    slow_on_cpu_s = 0.0

    def __init__(self, checkpoint: Path, queries: Mapping[str, tuple[str, ...]], *, settings_dir: Path,
                 device: str = "cpu", max_objects: int = 100, name: str | None = None) -> None:
        if not checkpoint.is_file():
            raise DetectorUnavailableError(
                f"{checkpoint}: preannotate.detector.model file not found (expected an Ultralytics .pt checkpoint, "
                "e.g. yolo11n.pt)"
            )
        yolo = import_yolo(settings_dir)
        try:
            self._model = yolo(str(checkpoint), task="detect")
        except Exception as error:  # ultralytics raises many kinds for a bad file; name the file and the reason
            raise DetectorUnavailableError(
                f"{checkpoint}: not a loadable Ultralytics checkpoint: {type(error).__name__}: {error}"
            ) from None
        names: dict[int, str] = dict(self._model.names)
        by_name = {name: index for index, name in names.items()}
        self._label_of: dict[int, str] = {}
        for label, class_names in queries.items():
            for class_name in class_names:
                if class_name not in by_name:
                    raise UnknownClassError(
                        f"preannotate.detector.classes: {label}: {class_name!r} is not a class of {checkpoint.name}; "
                        f"its classes are {sorted(by_name)}"
                    )
                self._label_of[by_name[class_name]] = label
        self.queries: Mapping[str, tuple[str, ...]] = dict(queries)
        self.device = device
        self.max_objects = max_objects
        self.detector_id = f"ultralytics:{name or checkpoint.stem}@{file_digest(str(checkpoint))}"

    def detect(self, images: Sequence[np.ndarray], *, min_score: float) -> list[list[Detection]]:
        """Boxes of the queried classes in each HWC uint8 RGB image, XYXY pixels of that image."""
        if not images:
            return []
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in images]  # Ultralytics reads arrays as BGR
        results = self._model.predict(
            bgr, conf=min_score, classes=sorted(self._label_of), max_det=self.max_objects, device=self.device,
            verbose=False,
        )
        found = []
        for result in results:
            boxes = result.boxes
            xyxy = boxes.xyxy.cpu().numpy().astype(float)
            conf = boxes.conf.cpu().numpy().astype(float)
            cls = boxes.cls.cpu().numpy().astype(int)
            found.append([
                Detection(self._label_of[int(c)], (x1, y1, x2, y2), float(s))
                for (x1, y1, x2, y2), s, c in zip(xyxy.tolist(), conf.tolist(), cls.tolist(), strict=True)
                if int(c) in self._label_of
            ])
        return found
