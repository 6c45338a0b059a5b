"""The model-family interface: how an image becomes its cached features, and how prompts plus features become masks.

A family (SAM / MobileSAM / LiteMedSAM, SAM 2.1, HQ-SAM) caches different named arrays per image
(:attr:`ImageEmbedding.features` plus :attr:`ImageEmbedding.extras`) and decodes them with its own prompt encoder and
mask decoder, but every family takes the same :class:`~batchlabel.infer.decoder.Prompt` (pixels of the oriented
image) and answers with the same :class:`~batchlabel.infer.decoder.DecodedMasks` (bool masks at the original size,
predicted IoU scores, ``(K, 256, 256)`` low-res logits to feed back as ``mask_logits``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from batchlabel.infer.decoder import DecodedMasks, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.images import LoadedImage


class ModelFamily(ABC):
    """One loaded model of one family, ready to encode images and decode prompts. Thread-safe for decoding.

    Attributes:
        name: the configured model name, e.g. ``"sam2.1_hiera_tiny"``.
        model_id: ``"<name>@<first 8 hex of the weights' sha256>"`` or ``"<name>@random"``; part of every
            embedding's store address, so two families' (or two checkpoints') features never mix.
        input_size: the model's square input side in pixels (1024 for SAM 2.1 and HQ-SAM).
        prompt_kinds: prompt kinds the weights support, a subset of ``{"point", "box", "mask"}``.
        feature_names: the named arrays an embedding of this family holds: ``"image_embed"`` (``features``) first,
            then the ``extras`` names.
    """

    name: str
    model_id: str
    input_size: int
    prompt_kinds: frozenset[str]
    feature_names: tuple[str, ...]

    @abstractmethod
    def encode(self, loaded: LoadedImage) -> ImageEmbedding:
        """Features of one image (``loaded.rgb`` HWC uint8 RGB after EXIF orientation), float32, read-only."""

    @abstractmethod
    def decode(self, embedding: ImageEmbedding, prompt: Prompt, *, multimask: bool = False) -> DecodedMasks:
        """Masks for one prompt on one embedding of this model.

        With ``multimask=False`` one mask: the model's single-mask output, except for a lone point (ambiguous),
        where the best-scoring of the three multimask candidates is returned (the project's rule for every family).
        With ``multimask=True`` the three candidates, sorted by decreasing score.

        Raises:
            ValueError: the embedding was made by another model, or the prompt uses a kind the model lacks.
        """

    def decode_many(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False
    ) -> list[DecodedMasks]:
        """:meth:`decode` for each prompt, results in input order."""
        return [self.decode(embedding, prompt, multimask=multimask) for prompt in prompts]

    def check(self, embedding: ImageEmbedding, prompt: Prompt) -> None:
        """Refuse embeddings of another model and prompt kinds this model does not support (clear messages)."""
        if embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding of image {embedding.image_sha256[:12]} was made by {embedding.model_id!r}, "
                f"this decoder belongs to {self.model_id!r}; re-encode the image with this model"
            )
        missing = [name for name in self.feature_names[1:] if name not in embedding.extras]
        if missing:
            raise ValueError(
                f"embedding of image {embedding.image_sha256[:12]} lacks the {self.name} features {missing}; "
                "re-encode the image"
            )
        unsupported = prompt.kinds - self.prompt_kinds
        if unsupported:
            raise ValueError(
                f"{self.model_id} does not support {'/'.join(sorted(unsupported))} prompts "
                f"(it supports: {', '.join(sorted(self.prompt_kinds))})"
            )
