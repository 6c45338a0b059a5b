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
import math
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
            # amp=False also on CUDA: measured on an H200 (benchmarks/RESULTS.md, 2026-12-04), a 20-image fine-tune
            # at imgsz 320 reached mAP50 0.04 with AMP against 0.85 without (twice), and AMP's start-up check wants
            # to download yolo26n.pt, which offline costs a warning and seconds; a nano model on a few images gains
            # nothing from AMP's speed.
            try:
                model.train(data=str(dataset_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device,
                            workers=0, plots=False, amp=False, project=str(out_dir),
                            name="run", exist_ok=True, verbose=False, patience=max(epochs, 1), seed=0,
                            deterministic=False,
                            warmup_epochs=warmup_epochs(_train_images(dataset_yaml), batch=batch, epochs=epochs))
            except (RuntimeError, ValueError, FileNotFoundError, KeyError, AssertionError) as error:
                raise TrainerError(f"Ultralytics training on {dataset_yaml} failed: {type(error).__name__}: "
                                   f"{error} (its output: {console})") from None
        trainer = model.trainer
        weights = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        if not weights.is_file():
            raise TrainerError(f"Ultralytics wrote no weights under {out_dir}")
        return TrainResult(weights=weights, metrics=_metrics(trainer.metrics), epochs=int(trainer.epoch) + 1,
                           seconds=time.monotonic() - start)


#: Ultralytics warms the learning rate up over max(warmup_epochs x batches per epoch, 100) steps.
WARMUP_MIN_STEPS = 100


def warmup_epochs(train_images: int, *, batch: int, epochs: int) -> float:
    """Ultralytics' default 3 warm-up epochs, or none when the whole training has fewer steps than its 100-step
    warm-up floor: a first model on 20 reviewed images (2 steps per epoch) would otherwise train entirely inside the
    warm-up ramp and land anywhere (measured: mAP50 0.30 after 20 epochs, against 0.9+ without warm-up)."""
    steps = math.ceil(max(train_images, 1) / max(batch, 1)) * epochs
    return 3.0 if steps >= 3 * WARMUP_MIN_STEPS else 0.0


def _train_images(dataset_yaml: Path) -> int:
    """How many images the data.yaml's ``train`` folder holds (0 when it cannot be read)."""
    import yaml

    try:
        data = yaml.safe_load(dataset_yaml.read_text(encoding="utf-8")) or {}
        root = Path(data.get("path") or dataset_yaml.parent)
        folder = root / str(data.get("train", "images/train"))
        return sum(1 for path in folder.iterdir() if path.is_file())
    except (OSError, ValueError, yaml.YAMLError):
        return 0


@contextlib.contextmanager
def _logger_streams_to(stream: Any) -> Iterator[None]:
    """Point Ultralytics' own log handlers (bound to the terminal at its import) at ``stream`` for a while."""
    handlers = [handler for handler in logging.getLogger("ultralytics").handlers
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    previous = [handler.stream for handler in handlers]
    for handler in handlers:  # not setStream: it flushes the old stream, which may be closed (a test's capture)
        handler.stream = stream
    try:
        yield
    finally:
        for handler, old in zip(handlers, previous, strict=True):
            handler.stream = old


def _metrics(raw: Any) -> dict[str, float]:
    found = dict(raw or {})
    return {name: round(float(found[key]), 4) for key, name in _METRIC_KEYS.items() if key in found}
