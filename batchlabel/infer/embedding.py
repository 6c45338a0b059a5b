"""The immutable value every stage shares: one image's SAM embedding plus what is needed to decode prompts on it.

Encode once, prompt many: the encoder produces an :class:`ImageEmbedding`, the store persists it, and the decoder is a
pure function of (embedding, prompts). Nothing mutates an embedding after it is made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Bump when resizing/normalisation changes: stored embeddings made by other preprocessing are then not reused.
PREPROCESSING_VERSION = 1


@dataclass(frozen=True)
class ImageEmbedding:
    """One image's encoder output.

    Attributes:
        features: ``(1, 256, 64, 64)`` float16 or float32, read-only (the image encoder's output for SAM v1 models).
        original_size: ``(height, width)`` in pixels of the image *after* EXIF orientation, i.e. what Label Studio
            displays and what masks are produced at.
        input_size: ``(height, width)`` of the image after resizing its longest side to the model's input size and
            before padding (SAM's ``input_size``); prompts are scaled from ``original_size`` to this frame.
        model_id: the model and checkpoint that produced it, e.g. ``"litemedsam@79d8c9dc"``.
        precision: the encoder precision used: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        image_sha256: hex sha256 of the image file's bytes (content address).
        exif_orientation: the EXIF orientation tag (1-8) that was applied when loading the image; 1 = none.
        created: unix time the embedding was computed.
        extras: further named feature arrays a model family's decoder reads besides ``features`` (read-only), e.g.
            SAM 2.1's ``high_res_feats_0`` ``(1, 32, 256, 256)`` and ``high_res_feats_1`` ``(1, 64, 128, 128)``, or
            HQ-SAM's ``interm_embed`` ``(1, 64, 64, 768)``; empty for SAM / MobileSAM / LiteMedSAM.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str
    precision: str
    image_sha256: str
    exif_orientation: int = 1
    created: float = field(default_factory=time.time)
    preprocessing_version: int = PREPROCESSING_VERSION
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.ndim != 4 or self.features.shape[0] != 1:
            raise ValueError(f"features must be (1, C, H, W), got {self.features.shape}")
        if self.features.flags.writeable:
            frozen = self.features.copy() if self.features.base is not None else self.features
            frozen.flags.writeable = False
            object.__setattr__(self, "features", frozen)
        object.__setattr__(self, "original_size", (int(self.original_size[0]), int(self.original_size[1])))
        object.__setattr__(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        object.__setattr__(self, "extras", {name: _read_only(array) for name, array in self.extras.items()})

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes) + sum(int(array.nbytes) for array in self.extras.values())


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` itself when already read-only, else a read-only copy (the caller's array stays writable)."""
    if not array.flags.writeable:
        return array
    frozen = array.copy()
    frozen.flags.writeable = False
    return frozen
