"""A transformers model family (SAM 2.1, HQ-SAM) behind the decoder interface every caller uses
(:class:`~batchlabel.infer.decoder.DecoderBase`: ``decode``, ``decode_many``, ``decode_batch``, ``to_masks``), so
pre-annotation, ``serve``, segment-everything and ``--mask-boxes`` decode a family's embeddings unchanged.

Prompts of one structure decode in one forward as the model's point batch
(:meth:`~batchlabel.infer.families.hf.TransformersFamily.low_res_batch`); masks are upsampled in the family's own
resize convention (:meth:`~batchlabel.infer.families.hf.TransformersFamily.to_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from batchlabel.infer.decoder import DecoderBase, LowRes, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.families.hf import TransformersFamily


class FamilyDecoder(DecoderBase):
    """:class:`DecoderBase` on a :class:`TransformersFamily`'s own prompt encoder and mask decoder."""

    def __init__(self, family: TransformersFamily) -> None:
        super().__init__(input_size=family.input_size, prompt_kinds=tuple(family.prompt_kinds),
                         model_id=family.model_id)
        self.family = family

    def decode_batch(self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False) -> LowRes:
        """``B`` prompts of one structure -> :class:`LowRes` ``(B, K, 256, 256)`` / ``(B, K)``, ``K=3`` sorted by
        score with ``multimask`` else 1 (see :meth:`DecoderBase.decode`)."""
        self._check_embedding(embedding)
        logits, scores = self.family.low_res_batch(embedding, prompts, multimask=multimask)
        return LowRes(logits, scores)

    def to_masks(self, embedding: ImageEmbedding, logits: Tensor) -> np.ndarray:
        return self.family.to_masks(embedding, logits)
