"""SAM 2.1 (image predictor) on transformers' ``Sam2Model``.

Cached per image (float32 here, float16 in the store; 8 MiB per image in fp16 for the official models):

- ``image_embed`` ``(1, 256, 64, 64)``: the last FPN level plus ``no_memory_embedding`` (what SAM 2's image
  predictor adds when there is no video memory);
- ``high_res_feats_0`` ``(1, 32, 256, 256)`` and ``high_res_feats_1`` ``(1, 64, 128, 128)``: the two finer FPN levels
  already projected by the mask decoder's ``conv_s0`` / ``conv_s1``.

Input: every image resized to 1024x1024 (no padding, aspect not kept), ImageNet mean/std; so
``embedding.input_size`` is ``(1024, 1024)`` and prompts scale per axis. The single-mask output for points + box or
several points is SAM 2's own (token 0, or the best multimask token when token 0 is unstable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.families.hf import HfModelSpec, TransformersFamily
from batchlabel.infer.upsample import upsample_masks

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def tiny_sam2_config() -> Any:
    """A 2.6 M-parameter SAM 2 config for tests: a 5-block Hiera (widths 16-128) with the official 1024 px input,
    256-channel FPN and feature-map sizes, and a narrower mask decoder (MLP 256)."""
    from transformers import Sam2Config

    return Sam2Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 16,
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 1, 1],
                "global_attention_blocks": [3],  # not a stage's first block (those pool the queries)
            },
            "backbone_channel_list": [128, 64, 32, 16],
        },
        mask_decoder_config={"mlp_dim": 256, "iou_head_hidden_dim": 64},
    )


SAM2_SPECS: dict[str, HfModelSpec] = {
    name: HfModelSpec(name=name, hub_id=hub_id, parameters=parameters, tiny_config=tiny_sam2_config)
    for name, hub_id, parameters in (
        ("sam2.1_hiera_tiny", "facebook/sam2.1-hiera-tiny", 38_900_000),
        ("sam2.1_hiera_small", "facebook/sam2.1-hiera-small", 46_000_000),
        ("sam2.1_hiera_base_plus", "facebook/sam2.1-hiera-base-plus", 80_800_000),
        ("sam2.1_hiera_large", "facebook/sam2.1-hiera-large", 224_400_000),
    )
}


class Sam2Family(TransformersFamily):
    """SAM 2.1 image segmentation on cached ``image_embed`` + ``high_res_feats_0/1``."""

    model_type = "sam2"
    feature_names = ("image_embed", "high_res_feats_0", "high_res_feats_1")

    @staticmethod
    def model_class() -> type[PreTrainedModel]:
        from transformers import Sam2Model

        return Sam2Model  # type: ignore[no-any-return]

    def image_processor(self) -> Any:
        from transformers import Sam2ImageProcessor

        return Sam2ImageProcessor(size={"height": self.input_size, "width": self.input_size})

    def input_frame(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return (self.input_size, self.input_size)

    def to_masks(self, embedding: ImageEmbedding, logits: Tensor) -> np.ndarray:
        """SAM 2's convention: one bilinear resize of the whole ``(K, 256, 256)`` logits to the original size (no
        padding to crop), i.e. the fast upsampler with a 256 px "input" (its first resize is then the identity).
        SAM's two-step resize differs from it on 1-2 % of a mask's pixels."""
        side = int(logits.shape[-1])
        return upsample_masks(logits, original_size=embedding.original_size, input_size=(side, side), padded_size=side)

    def features(self, pixel_values: Tensor) -> dict[str, Tensor]:
        high_res_0, high_res_1, image_embed = self.model.get_image_embeddings(pixel_values)
        return {"image_embed": image_embed, "high_res_feats_0": high_res_0, "high_res_feats_1": high_res_1}

    def low_res(self, features: dict[str, Tensor], prompts: dict[str, Tensor], *, multimask: bool) -> Any:
        image_embeddings = [features["high_res_feats_0"], features["high_res_feats_1"], features["image_embed"]]
        return self.model(image_embeddings=image_embeddings, multimask_output=multimask, **prompts)
