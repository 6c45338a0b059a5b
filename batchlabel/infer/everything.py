"""Segment-everything: automatic masks from a grid of point prompts on one cached embedding.

The algorithm is ``segment_anything.SamAutomaticMaskGenerator``'s for a single crop (no crop layers), using its
``utils.amg`` helpers, with one change for speed: filtering (predicted IoU, stability score, area) and box NMS run on
the decoder's 256x256 low-res logits, and only the masks that survive are upsampled to the original resolution.
Stability scores are therefore measured on the low-res logits (SAM measures them on full-size logits); the kept
masks' areas and boxes are measured again at full resolution.

Needs a model that accepts point prompts (LiteMedSAM does not: it raises ``ValueError``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.utils.amg import batched_mask_to_box, build_point_grid, calculate_stability_score
from torchvision.ops import batched_nms

from batchlabel.infer.decoder import DecoderBase, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.upsample import MASK_THRESHOLD

logger = logging.getLogger(__name__)

#: ``SamAutomaticMaskGenerator``'s default offset for the stability score (logit units).
STABILITY_SCORE_OFFSET = 1.0


@dataclass(frozen=True)
class ObjectMask:
    """One automatically found object.

    Attributes:
        mask: ``(H, W)`` bool at the embedding's ``original_size`` (oriented image).
        score: the decoder's predicted IoU.
        stability: SAM's stability score (IoU of the masks thresholded at +-1 logit), on the low-res logits.
        box_xyxy: ``(x1, y1, x2, y2)`` pixel edges enclosing the mask: ``x1`` = leftmost mask column, ``x2`` = rightmost
            column + 1 (so ``x2 - x1`` is the width in pixels).
    """

    mask: np.ndarray
    score: float
    stability: float
    box_xyxy: tuple[float, float, float, float]

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())


def _valid_low_res(embedding: ImageEmbedding, padded_size: int, low_res: int) -> tuple[int, int]:
    """``(rows, cols)`` of the low-res logits that cover the image (the rest is padding)."""
    per_pixel = low_res / padded_size
    return (
        min(low_res, int(np.ceil(embedding.input_size[0] * per_pixel))),
        min(low_res, int(np.ceil(embedding.input_size[1] * per_pixel))),
    )


def segment_everything(
    decoder: DecoderBase,
    embedding: ImageEmbedding,
    *,
    points_per_side: int = 16,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.92,
    min_area_px: int = 100,
    max_masks: int = 50,
    box_nms_thresh: float = 0.7,
) -> list[ObjectMask]:
    """Find objects with a ``points_per_side`` x ``points_per_side`` grid of single positive clicks (multimask).

    Args:
        decoder: a :class:`~batchlabel.infer.decoder.MaskDecoder` or ``CachedOnnxMaskDecoder`` that accepts points.
        embedding: the image's embedding.
        points_per_side: grid side; ``points_per_side ** 2`` prompts, 3 candidate masks each.
        points_per_batch: prompts decoded together.
        pred_iou_thresh: keep candidates whose predicted IoU is above this.
        stability_score_thresh: keep candidates whose stability score is at least this.
        min_area_px: drop masks smaller than this many pixels of the original image.
        max_masks: return at most this many masks (the best-scoring).
        box_nms_thresh: box IoU above which the lower-scoring of two masks is dropped.

    Returns:
        Masks sorted by decreasing predicted IoU; the same list for the same inputs (deterministic).
    """
    if points_per_side < 1 or points_per_batch < 1 or max_masks < 1:
        raise ValueError("points_per_side, points_per_batch and max_masks must be positive")
    if "point" not in decoder.prompt_kinds:
        raise ValueError(
            f"segment-everything prompts a grid of points; {decoder.model_id or 'this model'} does not support point "
            "prompts (use boxes from another source, or a model trained with points)"
        )
    height, width = embedding.original_size
    points = build_point_grid(points_per_side) * np.array([width, height], dtype=np.float64)
    prompts = [Prompt(points=point[None], point_labels=np.ones(1, dtype=np.int32)) for point in points]

    logits_kept: list[torch.Tensor] = []
    scores_kept: list[torch.Tensor] = []
    stability_kept: list[torch.Tensor] = []
    rows = cols = 0
    for start in range(0, len(prompts), points_per_batch):
        batch = decoder.decode_batch(embedding, prompts[start : start + points_per_batch], multimask=True)
        low_res = batch.logits.shape[-1]
        rows, cols = _valid_low_res(embedding, decoder.input_size, low_res)
        logits = batch.logits.flatten(0, 1)
        scores = batch.scores.flatten(0, 1)
        keep = scores > pred_iou_thresh
        logits, scores = logits[keep], scores[keep]
        # statistics on the part of the logits that covers the image; the full logits are kept for upsampling
        stability = calculate_stability_score(logits[:, :rows, :cols], MASK_THRESHOLD, STABILITY_SCORE_OFFSET)
        keep = stability >= stability_score_thresh
        logits_kept.append(logits[keep].clone())
        scores_kept.append(scores[keep])
        stability_kept.append(stability[keep])
    logits = torch.cat(logits_kept)
    scores = torch.cat(scores_kept)
    stability = torch.cat(stability_kept)
    if len(scores) == 0:
        logger.info("segment-everything: no candidate passed the score filters")
        return []

    # low-res pixel -> original pixels
    scale_y = (decoder.input_size / low_res) * height / embedding.input_size[0]
    scale_x = (decoder.input_size / low_res) * width / embedding.input_size[1]
    binary = logits[:, :rows, :cols] > MASK_THRESHOLD
    area = binary.flatten(1).sum(dim=1).float() * (scale_x * scale_y)
    keep = area >= min_area_px
    binary, logits, scores, stability = binary[keep], logits[keep], scores[keep], stability[keep]
    if len(scores) == 0:
        return []
    boxes = batched_mask_to_box(binary).float()
    boxes[:, 2:] += 1.0  # inclusive pixel index -> right/bottom edge
    boxes *= torch.tensor([scale_x, scale_y, scale_x, scale_y])
    order = batched_nms(boxes, scores, torch.zeros(len(scores), dtype=torch.int64), iou_threshold=box_nms_thresh)

    results: list[ObjectMask] = []
    for index in order.tolist():
        mask = decoder.to_masks(embedding, logits[index : index + 1])[0]
        area_px = int(mask.sum())
        if area_px < max(min_area_px, 1):
            continue
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        box = (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))
        results.append(
            ObjectMask(mask=mask, score=float(scores[index]), stability=float(stability[index]), box_xyxy=box)
        )
        if len(results) >= max_masks:
            break
    logger.debug(
        "segment-everything: %d prompts, %d candidates after filters, %d after NMS, %d returned",
        len(prompts),
        len(scores),
        len(order),
        len(results),
    )
    return results
