"""HQ-SAM on transformers' ``SamHQModel``: SAM's ViT encoder, prompt encoder and decoder plus the HQ output token,
whose mask branch also reads the encoder's first global-attention block.

Cached per image (float32 here, float16 in the store; 8 MiB per image in fp16 for ViT-B):

- ``image_embed`` ``(1, 256, 64, 64)``: the encoder's neck output (as SAM's);
- ``interm_embed`` ``(1, 64, 64, D)``: the first global-attention block's output, channels last, ``D`` the ViT
  width (768 for ViT-B). The decoder reads only this one of the global blocks (as the official ``predict`` does).

Input: longest side resized to 1024, SAM's pixel mean/std, padded bottom/right (as SAM). Masks are HQ-SAM's
default combination (each SAM mask token's logits plus the HQ token's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from batchlabel.infer.families.hf import HfModelSpec, TransformersFamily
from batchlabel.infer.preprocess import input_size_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def tiny_sam_hq_config() -> Any:
    """A 3.7 M-parameter HQ-SAM config for tests: a 2-layer ViT of width 96 (block 1 global) at the official
    1024 px input and 64x64 embedding, and a narrower mask decoder (MLP 256)."""
    from transformers import SamHQConfig

    return SamHQConfig(
        vision_config={
            "hidden_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "global_attn_indexes": [1],
            "mlp_dim": 192,
            "output_channels": 256,
        },
        mask_decoder_config={"vit_dim": 96, "mlp_dim": 256, "iou_head_hidden_dim": 64},
    )


SAM_HQ_SPECS: dict[str, HfModelSpec] = {
    name: HfModelSpec(name=name, hub_id=hub_id, parameters=parameters, tiny_config=tiny_sam_hq_config)
    for name, hub_id, parameters in (
        ("sam_hq_vit_b", "syscv-community/sam-hq-vit-base", 94_800_000),
        ("sam_hq_vit_l", "syscv-community/sam-hq-vit-large", 313_600_000),
        ("sam_hq_vit_h", "syscv-community/sam-hq-vit-huge", 637_000_000),
    )
}


class SamHqFamily(TransformersFamily):
    """HQ-SAM on cached ``image_embed`` + ``interm_embed``."""

    model_type = "sam_hq"
    feature_names = ("image_embed", "interm_embed")

    @staticmethod
    def model_class() -> type[PreTrainedModel]:
        from transformers import SamHQModel

        return SamHQModel  # type: ignore[no-any-return]

    def image_processor(self) -> Any:
        from transformers import SamImageProcessor

        side = self.input_size
        return SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side})

    def input_frame(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return input_size_for(original_size, self.input_size)

    def features(self, pixel_values: Tensor) -> dict[str, Tensor]:
        image_embed, intermediate = self.model.get_image_embeddings(pixel_values)
        return {"image_embed": image_embed, "interm_embed": intermediate[0]}

    def low_res(self, features: dict[str, Tensor], prompts: dict[str, Tensor], *, multimask: bool) -> Any:
        return self.model(
            image_embeddings=features["image_embed"],
            intermediate_embeddings=[features["interm_embed"]],
            multimask_output=multimask,
            **prompts,
        )
