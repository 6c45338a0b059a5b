"""Matching a task's predicted objects to the objects of its reviewed annotation, and naming what happened to each.

Rules (issue 16, exact):

- IoU is mask IoU when both objects have a mask, else box IoU (a box-only object against a mask uses the mask's
  bounding box).
- Each predicted object is matched to the final object that overlaps it most, whatever its label; each final object
  is matched at most once. Only pairs with IoU >= :data:`MATCH_IOU` can match. Pairs are taken greedily, highest IoU
  first; ties go to the same-label pair, then to the earlier prediction, then to the earlier final object (objects
  in result order), so the outcome never depends on dictionary order.
- **accepted**: matched, same label, IoU >= :data:`ACCEPT_IOU`; **edited**: matched, same label, IoU below that;
  **relabeled**: matched, another label; **deleted**: not matched (IoU 0 for ``mean_iou``). Final objects no
  prediction matched are **added**, under their own label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: A predicted object and a final object overlapping at least this much are the same object.
MATCH_IOU = 0.5
#: A same-label match at least this close counts as accepted unchanged.
ACCEPT_IOU = 0.95

Outcome = Literal["accepted", "edited", "relabeled", "deleted"]


@dataclass(frozen=True)
class RegionObject:
    """One object of a prediction or an annotation.

    ``rle``: COCO compressed RLE ``{"size": [H, W], "counts": str}`` of its (H, W) mask in oriented image space, or
    None for a box-only object. ``box_xywh``: ``[x, y, width, height]`` pixel edges (the mask's bbox for masks).
    """

    label: str
    rle: dict[str, Any] | None
    box_xywh: tuple[float, float, float, float]


@dataclass(frozen=True)
class PredictionOutcome:
    """What happened to one predicted object: ``final_index`` is the matched final object's position, or None."""

    label: str
    outcome: Outcome
    iou: float
    final_index: int | None
    final_label: str | None


@dataclass(frozen=True)
class TaskMatch:
    """The matching of one task: one outcome per predicted object (in order) and the labels of the added objects."""

    predictions: tuple[PredictionOutcome, ...]
    added: tuple[str, ...]


def iou_matrix(predicted: Sequence[RegionObject], final: Sequence[RegionObject]) -> np.ndarray:
    """(P, F) float64 IoU of every predicted object with every final object (mask IoU, box IoU for box-only)."""
    from pycocotools import mask as mask_utils

    from batchlabel.formats.coco_rle import as_pycocotools

    ious = np.zeros((len(predicted), len(final)), dtype=np.float64)
    if not predicted or not final:
        return ious
    boxes_p = [list(obj.box_xywh) for obj in predicted]
    boxes_f = [list(obj.box_xywh) for obj in final]
    ious[:] = np.asarray(mask_utils.iou(boxes_p, boxes_f, [0] * len(final)), dtype=np.float64).reshape(ious.shape)
    masked_p = [i for i, obj in enumerate(predicted) if obj.rle is not None]
    masked_f = [j for j, obj in enumerate(final) if obj.rle is not None]
    if masked_p and masked_f:
        rles_p = [as_pycocotools(predicted[i].rle) for i in masked_p]  # type: ignore[arg-type]
        rles_f = [as_pycocotools(final[j].rle) for j in masked_f]  # type: ignore[arg-type]
        mask_ious = np.asarray(mask_utils.iou(rles_p, rles_f, [0] * len(rles_f)), dtype=np.float64)
        ious[np.ix_(masked_p, masked_f)] = mask_ious.reshape(len(masked_p), len(masked_f))
    return ious


def match_task(predicted: Sequence[RegionObject], final: Sequence[RegionObject]) -> TaskMatch:
    """Apply the module's rules to one task's predicted and final objects."""
    ious = iou_matrix(predicted, final)
    pairs = [
        (-float(ious[i, j]), predicted[i].label != final[j].label, i, j)
        for i in range(len(predicted))
        for j in range(len(final))
        if ious[i, j] >= MATCH_IOU
    ]
    matched_final: dict[int, int] = {}  # final index -> predicted index
    matched_predicted: dict[int, int] = {}
    for _, _, i, j in sorted(pairs):
        if i in matched_predicted or j in matched_final:
            continue
        matched_predicted[i] = j
        matched_final[j] = i
    outcomes = []
    for i, obj in enumerate(predicted):
        if i not in matched_predicted:
            outcomes.append(PredictionOutcome(obj.label, "deleted", 0.0, None, None))
            continue
        j = matched_predicted[i]
        iou = float(ious[i, j])
        other = final[j].label
        outcome: Outcome = "relabeled" if other != obj.label else ("accepted" if iou >= ACCEPT_IOU else "edited")
        outcomes.append(PredictionOutcome(obj.label, outcome, iou, j, other))
    added = tuple(obj.label for j, obj in enumerate(final) if j not in matched_final)
    return TaskMatch(tuple(outcomes), added)
