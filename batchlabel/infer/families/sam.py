"""SAM, MobileSAM and LiteMedSAM behind the :class:`ModelFamily` interface, through the existing engine.

Encoding is :meth:`BatchEncoder.encode_image` (torch or ONNX Runtime backend as configured) and decoding is
:class:`MaskDecoder` (the folded-attention decoder with its image-side cache and fast upsampling): nothing is
reimplemented here. The cached features are one array, ``image_embed`` ``(1, 256, 64, 64)``; no extras.
"""

from __future__ import annotations

from batchlabel.infer.decoder import DecodedMasks, MaskDecoder, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.encoder import BatchEncoder
from batchlabel.infer.families.base import ModelFamily
from batchlabel.infer.images import LoadedImage
from batchlabel.infer.models import LoadedModel


class SamFamily(ModelFamily):
    """A ``segment_anything`` model (:class:`LoadedModel`) as a family."""

    feature_names = ("image_embed",)

    def __init__(self, model: LoadedModel, *, encoder: BatchEncoder | None = None) -> None:
        self.model = model
        self.name = model.spec.name
        self.model_id = model.model_id
        self.input_size = model.spec.input_size
        self.prompt_kinds = model.spec.prompt_kinds
        self.encoder = encoder if encoder is not None else BatchEncoder(model, None, runtime="torch")
        self.decoder = MaskDecoder.from_model(model)

    def encode(self, loaded: LoadedImage) -> ImageEmbedding:
        return self.encoder.encode_image(loaded)

    def decode(self, embedding: ImageEmbedding, prompt: Prompt, *, multimask: bool = False) -> DecodedMasks:
        return self.decoder.decode(embedding, prompt, multimask=multimask)
