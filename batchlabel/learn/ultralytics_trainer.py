"""The Ultralytics :class:`~batchlabel.learn.trainer.Trainer`: fine-tunes a YOLO / RT-DETR ``.pt`` offline.

Ultralytics is AGPL-3.0, the optional extra ``batchlabel[ultralytics]``: imported only when a training starts,
through the detector's offline import (``YOLO_OFFLINE``, no auto-install, settings under batchlabel's cache). Its
plots (which download a font) are off; its console output goes to ``<out_dir>/ultralytics.log`` (a command's
``--json`` stays clean, and the caller's progress bar is the only thing on the terminal).
This module imports nothing of batchlabel beyond the detector's import helper (numpy only), so
``benchmarks/train.py`` runs it on a machine with only torch, numpy, Pillow and Ultralytics.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchlabel.annotate.detectors.base import DetectorUnavailableError
from batchlabel.annotate.detectors.ultralytics import import_yolo
from batchlabel.learn.trainer import BaseWeightsError, EpochProgress, TrainerError, TrainerUnavailableError, TrainResult

log = logging.getLogger(__name__)

#: Ultralytics' names of the validation metrics -> the manifest's.
_METRIC_KEYS = {"metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95"}


def resolve_train_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class UltralyticsTrainer:
    """Fine-tunes an Ultralytics checkpoint; ``settings_dir`` is Ultralytics' settings folder (batchlabel's cache)."""

    kind = "ultralytics"

    def __init__(self, *, settings_dir: Path) -> None:
        self.settings_dir = settings_dir

    def _yolo(self) -> Any:
        try:
            return import_yolo(self.settings_dir)
        except DetectorUnavailableError as error:
            raise TrainerUnavailableError(str(error).replace("preannotate.detector.kind: ultralytics",
                                                             "batchlabel train")) from None

    def check_base(self, base: Path) -> None:
        if not base.is_file():
            raise BaseWeightsError(f"{base}: train.base not found (expected an Ultralytics .pt checkpoint, e.g. "
                                   "yolo11n.pt)")
        yolo = self._yolo()
        try:
            model = yolo(str(base), task="detect")
        except Exception as error:  # Ultralytics raises many kinds for a bad file; name the file and the reason
            raise BaseWeightsError(f"{base}: train.base is not a loadable Ultralytics checkpoint: "
                                   f"{type(error).__name__}: {error}") from None
        if getattr(model, "task", "detect") != "detect":
            raise BaseWeightsError(f"{base}: train.base is a {model.task} model; expected a detect checkpoint")

    def train(self, dataset_yaml: Path, base: Path, out_dir: Path, *, epochs: int, imgsz: int, device: str,
              batch: int, on_epoch: Callable[[EpochProgress], None] | None = None) -> TrainResult:
        self.check_base(base)
        yolo = self._yolo()
        model = yolo(str(base), task="detect")
        device = resolve_train_device(device)
        start = time.monotonic()

        terminal = sys.stderr

        def epoch_done(trainer: Any) -> None:
            epoch = int(trainer.epoch) + 1
            if on_epoch is not None and epoch <= int(trainer.epochs):  # not the final validation of best.pt
                with contextlib.redirect_stderr(terminal):
                    on_epoch(EpochProgress(epoch, int(trainer.epochs), time.monotonic() - start,
                                           _metrics(trainer.metrics)))

        model.add_callback("on_fit_epoch_end", epoch_done)
        out_dir.mkdir(parents=True, exist_ok=True)
        console = out_dir / "ultralytics.log"
        with console.open("a", encoding="utf-8") as log_file, contextlib.redirect_stdout(log_file), \
                contextlib.redirect_stderr(log_file), _logger_streams_to(log_file):
            try:
                model.train(data=str(dataset_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device,
                            workers=0, plots=False, amp=device.startswith("cuda"), project=str(out_dir),
                            name="run", exist_ok=True, verbose=False, patience=max(epochs, 1), seed=0,
                            deterministic=False)
            except (RuntimeError, ValueError, FileNotFoundError, KeyError, AssertionError) as error:
                raise TrainerError(f"Ultralytics training on {dataset_yaml} failed: {type(error).__name__}: "
                                   f"{error} (its output: {console})") from None
        trainer = model.trainer
        weights = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        if not weights.is_file():
            raise TrainerError(f"Ultralytics wrote no weights under {out_dir}")
        return TrainResult(weights=weights, metrics=_metrics(trainer.metrics), epochs=int(trainer.epoch) + 1,
                           seconds=time.monotonic() - start)


@contextlib.contextmanager
def _logger_streams_to(stream: Any) -> Iterator[None]:
    """Point Ultralytics' own log handlers (bound to the terminal at its import) at ``stream`` for a while."""
    handlers = [handler for handler in logging.getLogger("ultralytics").handlers
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    previous = [handler.setStream(stream) for handler in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            if old is not None:
                handler.setStream(old)


def _metrics(raw: Any) -> dict[str, float]:
    found = dict(raw or {})
    return {name: round(float(found[key]), 4) for key, name in _METRIC_KEYS.items() if key in found}
