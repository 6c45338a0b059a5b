"""A transformers model family (SAM 2.1, HQ-SAM) as the :class:`~batchlabel.infer.encoder.BatchEncoder`'s encoder
runtime: the loader threads run the family's own image processor (:meth:`TransformersFamily.prepare`, a ``(3, S, S)``
float32 model input instead of SAM's uint8 canvas) and the batches go through the family's image encoder, giving the
named arrays the store keeps (``image_embed`` plus the family's extras). Batching, loader threads, the store and
error reporting stay the encoder's own.
"""

from __future__ import annotations

import numpy as np

from batchlabel.infer.families.hf import TransformersFamily


class FamilyRuntime:
    """:class:`~batchlabel.infer.encoder.PreparingRuntime` backed by a :class:`TransformersFamily`."""

    name = "transformers"

    def __init__(self, family: TransformersFamily) -> None:
        self.family = family
        self.precision = family.precision

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        return self.family.prepare(rgb)

    def encode(self, canvases: np.ndarray, input_sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        """``(B, 3, S, S)`` float32 model inputs -> named ``(B, ...)`` float32 arrays. On the CPU one image at a
        time (a batch costs more per image there, as for SAM: see ``TorchRuntime``)."""
        if self.family.device.type != "cpu" or len(input_sizes) == 1:
            return self.family.encode_pixels(canvases)
        singles = [self.family.encode_pixels(canvases[i : i + 1]) for i in range(len(input_sizes))]
        return {name: np.concatenate([single[name] for single in singles]) for name in singles[0]}
