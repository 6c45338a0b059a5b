"""The one interface a detector trainer implements (Ultralytics today; an mmdetection or torchvision trainer is a
new class here, not a new branch in the ``train`` loop).

A trainer reads an Ultralytics-style detect dataset (``data.yaml`` naming ``images/train``, ``images/val`` and the
class names; labels ``class cx cy w h`` normalised to the image) and writes its weights into ``out_dir``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class TrainerError(RuntimeError):
    """A training problem a user can act on; the message names the file or the missing piece."""


class TrainerUnavailableError(TrainerError):
    """The trainer's optional extra is not installed (the message says what to install)."""


class BaseWeightsError(TrainerError):
    """``train.base`` is missing or not loadable weights (the message names the file and the reason)."""


@dataclass(frozen=True)
class EpochProgress:
    """After one epoch: ``epoch`` counts from 1 to ``epochs``; ``elapsed_s`` since training began (seconds);
    ``metrics`` the validation metrics so far (``mAP50``, ``mAP50-95``, in [0, 1])."""

    epoch: int
    epochs: int
    elapsed_s: float
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """A finished training: ``weights`` (a file inside ``out_dir``), validation ``metrics`` (``mAP50``,
    ``mAP50-95``), ``epochs`` run and wall ``seconds``."""

    weights: Path
    metrics: Mapping[str, float]
    epochs: int
    seconds: float


class Trainer(Protocol):
    """Fine-tunes a detector from ``base`` weights on one dataset.

    Attributes:
        kind: the trainer's name (``"ultralytics"``).
    """

    kind: str

    def check_base(self, base: Path) -> None:
        """Raise :class:`BaseWeightsError` unless ``base`` is loadable weights (before any data is written)."""
        ...

    def train(self, dataset_yaml: Path, base: Path, out_dir: Path, *, epochs: int, imgsz: int, device: str,
              batch: int, on_epoch: Callable[[EpochProgress], None] | None = None) -> TrainResult:
        """Train for ``epochs`` at ``imgsz`` pixels (longest side) on ``device`` (``auto``, ``cpu``, ``cuda[:N]``),
        ``batch`` images per step; call ``on_epoch`` after each epoch. Raises :class:`TrainerError`."""
        ...
