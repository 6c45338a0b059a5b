"""A smart tool's context (``params.context.result``) -> one object's SAM prompt.

Label Studio sends **all** connected dynamic regions of the smart tool's type and label, including regions that came
from predictions (``"origin": "prediction"``). Only regions drawn by the annotator count: ``origin == "manual"``, or no
``origin`` at all (API callers such as ``/api/ml/{id}/interactive-annotating`` often omit it). Of those, every keypoint
(positive and negative, ``is_positive``) and the **latest** rectangle are combined into one prompt. The label is the
one of the latest manual region (the one the annotator just drew).

Coordinates: Label Studio items are in percent of ``original_width`` / ``original_height``; the parsed prompt is in
pixels of that frame (``frame_size``), and :meth:`InteractivePrompt.to_prompt` rescales to the embedding's
``original_size`` (image after EXIF orientation) when the two differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from batchlabel.infer.decoder import Prompt
from batchlabel.sync.results import ResultFormatError, parse_keypoint, parse_rectangle

KEYPOINT_TYPE = "keypointlabels"
RECTANGLE_TYPE = "rectanglelabels"
MANUAL_ORIGINS = (None, "manual")


class ContextError(ValueError):
    """The context holds no usable prompt, or an item is malformed. ``str(error)`` says which item and why."""


@dataclass(frozen=True)
class InteractivePrompt:
    """One object's prompt parsed from a context.

    Attributes:
        label: the smart tool's label (``None`` when the region carried none).
        points: ``(N, 2)`` float32 XY pixels in ``frame_size``, or ``None``.
        point_labels: ``(N,)`` int32, 1 = positive, 0 = negative, or ``None``.
        box: ``(4,)`` float32 XYXY pixels in ``frame_size``, or ``None``.
        frame_size: ``(height, width)`` the regions' percentages refer to (``original_height/width``), or ``None``.
        kind: ``"points"``, ``"box"`` or ``"box+points"`` (for logs and metrics).
    """

    label: str | None
    points: np.ndarray | None
    point_labels: np.ndarray | None
    box: np.ndarray | None
    frame_size: tuple[int, int] | None

    @property
    def kind(self) -> str:
        if self.box is not None and self.points is not None:
            return "box+points"
        return "box" if self.box is not None else "points"

    def to_prompt(self, image_size: tuple[int, int]) -> Prompt:
        """The decoder prompt in pixels of ``image_size`` ``(height, width)`` (the embedding's ``original_size``)."""
        height, width = image_size
        scale: np.ndarray = np.ones(2, dtype=np.float32)
        if self.frame_size is not None and tuple(self.frame_size) != (height, width):
            frame_h, frame_w = self.frame_size
            scale = np.array([width / frame_w, height / frame_h], dtype=np.float32)
        limit = np.array([width, height], dtype=np.float32)
        points = None
        if self.points is not None:
            points = np.clip(self.points * scale, 0, limit).astype(np.float32)
        box = None
        if self.box is not None:
            corners = np.clip(self.box.reshape(2, 2) * scale, 0, limit)
            box = np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.float32)
        return Prompt(points=points, point_labels=self.point_labels, box=box, mask_logits=None)


def is_manual(item: dict[str, Any]) -> bool:
    """True for a region the annotator drew (``origin`` ``"manual"`` or absent)."""
    return item.get("origin") in MANUAL_ORIGINS


def _frame_size(item: dict[str, Any], index: int) -> tuple[int, int] | None:
    width, height = item.get("original_width"), item.get("original_height")
    if width is None or height is None:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise ContextError(
            f"context.result[{index}]: original_width/original_height must be positive numbers, "
            f"got {width!r} x {height!r}"
        )
    return int(round(height)), int(round(width))


def parse_context(items: Sequence[Any]) -> InteractivePrompt:
    """Combine the manual keypoints (all) and the latest manual rectangle of ``items`` into one prompt.

    Raises :class:`ContextError` when an item is not an object, a keypoint/rectangle item is malformed, the items
    disagree on the image size, or no manual keypoint or rectangle is present.
    """
    points: list[tuple[float, float]] = []
    point_labels: list[int] = []
    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    frame: tuple[int, int] | None = None
    skipped = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ContextError(f"context.result[{index}]: expected an object, got {type(item).__name__}")
        kind = item.get("type")
        if kind not in (KEYPOINT_TYPE, RECTANGLE_TYPE):
            continue
        if not is_manual(item):
            skipped += 1
            continue
        size = _frame_size(item, index)
        if size is not None:
            if frame is not None and size != frame:
                raise ContextError(
                    f"context.result[{index}]: image size {size[1]}x{size[0]} differs from the other regions' "
                    f"{frame[1]}x{frame[0]}"
                )
            frame = size
        try:
            if kind == KEYPOINT_TYPE:
                item_label, (x, y), positive = parse_keypoint(item)
                points.append((float(x), float(y)))
                point_labels.append(1 if positive else 0)
            else:
                item_label, xyxy = parse_rectangle(item)
                box = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
        except ResultFormatError as exc:
            raise ContextError(f"context.result[{index}] ({kind}): {exc}") from None
        if item_label is not None:
            label = item_label
    if not points and box is None:
        why = f" ({skipped} came from predictions)" if skipped else ""
        raise ContextError(f"context has no manual keypointlabels or rectanglelabels region{why}")
    values = np.array([*(c for p in points for c in p), *(box or ())], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ContextError("context coordinates must be finite numbers")
    return InteractivePrompt(
        label=label,
        points=np.array(points, dtype=np.float32).reshape(-1, 2) if points else None,
        point_labels=np.array(point_labels, dtype=np.int32) if points else None,
        box=np.array(box, dtype=np.float32) if box is not None else None,
        frame_size=frame,
    )
