"""The encoder's input transform, identical to ``SamPredictor.set_image``.

Steps (SAM's): resize the longest side to ``spec.input_size`` with ``ResizeLongestSide`` (PIL bilinear on uint8,
``new = int(old * scale + 0.5)``), normalise (``"sam"``: ``(x - pixel_mean) / pixel_std``; ``"minmax"``: per-image
``(x - min) / (max - min)`` over the unpadded pixels), then zero-pad bottom/right to ``S x S``.

The work is split so that loader threads do the CPU-heavy resize (:func:`resize_to_canvas`, uint8) and the encoder does
normalise + pad on its device (:func:`normalise_canvas`), which gives bit-identical results to SamPredictor's order
(normalise then pad) because padded pixels are set to zero after normalising.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from batchlabel.infer.model_registry import ModelSpec


def input_size_for(original_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """``(height, width)`` after resizing ``original_size`` so its longest side is ``long_side`` (SAM's rounding)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    h, w = ResizeLongestSide.get_preprocess_shape(original_size[0], original_size[1], long_side)
    return int(h), int(w)


def resize_longest_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(h, w, 3)`` uint8 with ``max(h, w) == long_side`` (SamPredictor's resize)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    return np.ascontiguousarray(ResizeLongestSide(long_side).apply_image(rgb))


def resize_to_canvas(rgb: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """Resize and place top-left on a zero ``(3, S, S)`` uint8 canvas (CHW). Returns ``(canvas, input_size (h, w))``."""
    size = spec.input_size
    resized = resize_longest_side(rgb, size)
    h, w = resized.shape[:2]
    canvas = np.zeros((3, size, size), dtype=np.uint8)
    canvas[:, :h, :w] = resized.transpose(2, 0, 1)
    return canvas, (h, w)


def normalise_canvas(
    canvases: torch.Tensor, input_sizes: list[tuple[int, int]], spec: ModelSpec
) -> torch.Tensor:
    """``(B, 3, S, S)`` uint8 canvases (any device) -> ``(B, 3, S, S)`` float32 model input, padding zeroed.

    ``input_sizes[i]`` is the ``(h, w)`` of the valid top-left region of canvas ``i``.
    """
    import torch

    x = canvases.to(torch.float32)
    if spec.normalisation == "sam":
        mean = torch.tensor(spec.pixel_mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(spec.pixel_std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        for i, (h, w) in enumerate(input_sizes):
            x[i, :, h:, :] = 0
            x[i, :, :h, w:] = 0
    elif spec.normalisation == "minmax":
        for i, (h, w) in enumerate(input_sizes):
            valid = x[i, :, :h, :w]
            low, high = valid.min(), valid.max()
            scaled = (valid - low) / torch.clamp(high - low, min=1e-8)
            x[i].zero_()
            x[i, :, :h, :w] = scaled
    else:
        raise ValueError(f"unknown normalisation {spec.normalisation!r} for model {spec.name}")
    return x


def preprocess(rgb: np.ndarray, spec: ModelSpec) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(H, W, 3)`` uint8 RGB (oriented image) -> ``((1, 3, S, S)`` float32 CPU tensor, ``input_size (h, w)``)."""
    import torch

    canvas, input_size = resize_to_canvas(rgb, spec)
    return normalise_canvas(torch.from_numpy(canvas)[None], [input_size], spec), input_size
