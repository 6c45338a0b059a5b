"""Pre-annotation of one image: its cached embedding (+ the task's prompts) -> one Label Studio prediction.

Shared by ingestion (``batchlabel run``/``watch``) and the ML backend's batch ``/predict``. Pure apart from reading
the sidecar/COCO prompt files; thread-safe.

Modes (``preannotate.mode``):
- ``everything``: SAM automatic masks (grid of point prompts), labelled ``preannotate.default_label``; kept when
  predicted IoU >= ``min_score`` and stability >= ``stability_score_thresh``.
- ``boxes``: one mask per box prompt, keeping the box's label. Boxes come from ``preannotate.boxes_from``: ``tasks``
  (rectangles in the task's annotations and in predictions not made by batchlabel), ``coco`` (a COCO detection file,
  images matched by ``file_name`` = path relative to ``storage.root``, or the bare name when unique) and
  ``sidecar`` (``<image>.json`` or ``<image stem>.json`` beside the image, see :func:`read_sidecar`).
- ``points``: one mask per positive keypoint of the task (with that label's negative keypoints as negatives).
- ``detect``: a detector's labelled boxes for the project's labels, each turned into a mask by SAM's decoder on the
  embedding (see :mod:`batchlabel.annotate.detect`: stored proposals, score, overlap rule).
- ``none``: no prediction (:func:`preannotate` returns None).

Outputs per object as ``preannotate.outputs`` (brush RLE, polygon, rectangle), each item scored with the predicted IoU;
the prediction's ``score`` is its least certain object's (the minimum), so Label Studio's Data Manager ordered by
prediction score shows the least certain images first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.infer.embedding import ImageEmbedding

log = logging.getLogger(__name__)

#: Every model_version batchlabel writes starts with this, so its own predictions are never read back as prompts.
MODEL_VERSION_PREFIX = "batchlabel"


class PromptSourceError(ValueError):
    """A sidecar or COCO prompt file is unreadable or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class BoxPrompt:
    """A labelled box in the oriented image: ``box_xyxy`` pixels (x1, y1, x2, y2)."""

    label: str
    box_xyxy: tuple[float, float, float, float]


@dataclass(frozen=True)
class PointPrompt:
    """A labelled click in the oriented image: ``(x, y)`` pixels; ``positive`` False for a background click."""

    label: str
    xy: tuple[float, float]
    positive: bool = True


def _fmt(value: float) -> str:
    return f"{value:g}"


def model_version_for(config: Config, model_id: str) -> str:
    """The ``model_version`` of batchlabel's predictions: names the model, mode, thresholds and outputs.

    Deterministic, so predictions made by ingestion and by the backend's batch ``/predict`` with the same config
    share one version (the project shows only one). Example:
    ``batchlabel litemedsam@79d8c9dc everything iou>=0.88 stab>=0.92 pps=16 area>=100 max=50 brush+rectangle``.
    """
    pre = config.preannotate
    parts = [MODEL_VERSION_PREFIX, model_id, pre.mode]
    if pre.mode == "everything":
        parts += [
            f"iou>={_fmt(pre.min_score)}", f"stab>={_fmt(pre.stability_score_thresh)}", f"pps={pre.points_per_side}",
            f"area>={pre.min_area_px}", f"max={pre.max_masks}",
        ]
    elif pre.mode == "boxes":
        parts.append("from=" + "+".join(pre.boxes_from))
    elif pre.mode == "detect":
        from batchlabel.annotate.detect import model_version_part

        parts.append(model_version_part(config, control_names(config)[1]))
    parts.append("+".join(pre.outputs))
    if "polygon" in pre.outputs:
        parts.append(f"tol={_fmt(pre.polygon_tolerance_px)}")
    return " ".join(parts)


@lru_cache(maxsize=16)
def _control_names(labels: tuple[str, ...], label_config: Path | None) -> tuple[Any, tuple[str, ...]]:
    from batchlabel.sync.label_config import load_label_config, parse_control_names

    names, found = parse_control_names(load_label_config(labels, label_config))
    return names, tuple(found)


def control_names(config: Config) -> tuple[Any, tuple[str, ...]]:
    """(ControlNames, labels) of the configured labeling config."""
    return _control_names(config.label_studio.labels, config.label_studio.label_config)


def preannotate(config: Config, decoder: Any, embedding: ImageEmbedding, task: Mapping[str, Any], *,
                model_version: str | None = None) -> dict | None:
    """One Label Studio prediction for ``task`` from its image's ``embedding``.

    Args:
        config: the validated config (``preannotate``, labels/label_config, ``storage.root`` for sidecars).
        decoder: a ``batchlabel.infer.decoder.MaskDecoder`` (or anything with ``decode_many``) for the embedding's
            model.
        embedding: the image's embedding; masks are produced at ``embedding.original_size`` (oriented image).
        task: the Label Studio task dict (``data.image``; ``annotations``/``predictions`` with ``result`` lists for
            ``boxes``/``points`` from tasks). A task with only ``data`` is fine.
        model_version: the run's :func:`model_version_for` when the caller has it (computed once per run, not per
            task: in mode ``detect`` it looks the detector up); None computes it here.

    Returns:
        ``{"result": [...], "score": float, "model_version": str}``, or None in mode ``none`` and when there is
        nothing to predict (no prompts for the image, or no mask passed the thresholds): Label Studio rejects empty
        predictions.
    """
    pre = config.preannotate
    if pre.mode == "none":
        return None
    names, labels = control_names(config)
    objects: list[tuple[Any, ...]] = []
    if pre.mode == "everything":
        objects = _everything(config, decoder, embedding, labels)
    elif pre.mode == "boxes":
        boxes = gather_boxes(config, task, embedding.original_size)
        objects = _decode_boxes(decoder, embedding, boxes)
    elif pre.mode == "points":
        points = points_from_task(task, embedding.original_size)
        objects = _decode_points(decoder, embedding, points)
    elif pre.mode == "detect":
        from batchlabel.annotate.detect import detect_objects

        found = detect_objects(config, decoder, embedding, labels, task_image_path(config, task, names.image_key))
        objects = [(obj.mask, obj.label, obj.score, obj.box_xyxy) for obj in found]
    result: list[dict] = []
    scores: list[float] = []
    from batchlabel.sync.results import object_results

    for mask, label, score, *box in objects:
        items = object_results(
            mask, label=label, outputs=pre.outputs, names=names, score=round(float(score), 4),
            polygon_tolerance_px=pre.polygon_tolerance_px, box_xyxy=box[0] if box else None,
        )
        if items:
            result.extend(items)
            scores.append(float(score))
    if not result:
        return None
    if model_version is None:
        model_version = model_version_for(config, getattr(embedding, "model_id", "") or "")
    return {"result": result, "score": round(min(scores), 4), "model_version": model_version}


# -- everything ------------------------------------------------------------------------------------------------------
def _everything(config: Config, decoder: Any, embedding: ImageEmbedding, labels: Sequence[str]) -> list:
    from batchlabel.infer.everything import segment_everything

    pre = config.preannotate
    label = pre.default_label or (labels[0] if labels else None)
    if label is None:
        raise ValueError("preannotate.default_label is not set and the labeling config has no labels")
    found = segment_everything(
        decoder, embedding, points_per_side=pre.points_per_side, pred_iou_thresh=pre.min_score,
        stability_score_thresh=pre.stability_score_thresh, min_area_px=pre.min_area_px, max_masks=pre.max_masks,
    )
    return [(obj.mask, label, float(obj.score)) for obj in found]


# -- boxes -----------------------------------------------------------------------------------------------------------
def _decode_boxes(decoder: Any, embedding: ImageEmbedding, boxes: Sequence[BoxPrompt]) -> list:
    from batchlabel.infer.decoder import Prompt

    if not boxes:
        return []
    decoded = decoder.decode_many(embedding, [Prompt(box=np.asarray(b.box_xyxy, np.float32)) for b in boxes])
    return [(masks.masks[0], box.label, float(masks.scores[0])) for box, masks in zip(boxes, decoded, strict=True)]


def _results_of(task: Mapping[str, Any]) -> Iterable[dict]:
    """Result items of the task's annotations (not cancelled) and of predictions not made by batchlabel."""
    for annotation in task.get("annotations") or ():
        if isinstance(annotation, Mapping) and not annotation.get("was_cancelled"):
            yield from annotation.get("result") or ()
    for prediction in task.get("predictions") or ():
        if not isinstance(prediction, Mapping):
            continue  # exports list prediction ids only
        if str(prediction.get("model_version") or "").startswith(MODEL_VERSION_PREFIX):
            continue
        yield from prediction.get("result") or ()


def _scale(size_from: tuple[int, int], size_to: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy) from an item's original (height, width) to the embedding's."""
    return size_to[1] / max(size_from[1], 1), size_to[0] / max(size_from[0], 1)


def boxes_from_task(task: Mapping[str, Any], image_size: tuple[int, int]) -> list[BoxPrompt]:
    """Rectangles of the task as box prompts in pixels of an image of ``image_size`` (height, width)."""
    from batchlabel.sync.results import parse_rectangle

    boxes = []
    for (label, (x1, y1, x2, y2)), sx, sy in _parsed_items(task, "rectanglelabels", parse_rectangle, image_size):
        boxes.append(BoxPrompt(label, (float(x1) * sx, float(y1) * sy, float(x2) * sx, float(y2) * sy)))
    return boxes


def points_from_task(task: Mapping[str, Any], image_size: tuple[int, int]) -> list[PointPrompt]:
    """Keypoints of the task as click prompts in pixels of an image of ``image_size`` (height, width)."""
    from batchlabel.sync.results import parse_keypoint

    return [PointPrompt(label, (x * sx, y * sy), positive)
            for (label, (x, y), positive), sx, sy in _parsed_items(task, "keypointlabels", parse_keypoint, image_size)]


def _parsed_items(task: Mapping[str, Any], result_type: str, parse: Callable[[Mapping[str, Any]], Any],
                  image_size: tuple[int, int]) -> Iterator[tuple[Any, float, float]]:
    """(``parse(item)``, sx, sy) for the task's result items of ``result_type`` (annotations and foreign
    predictions), scaled from each item's original size to ``image_size``; a malformed item is a warning, skipped."""
    from batchlabel.sync.results import ResultFormatError

    for item in _results_of(task):
        if not isinstance(item, Mapping) or item.get("type") != result_type:
            continue
        try:
            parsed = parse(item)
        except ResultFormatError as error:
            log.warning("task %s: %s item skipped: %s", task.get("id"), result_type, error)
            continue
        yield (parsed, *_scale((int(item["original_height"]), int(item["original_width"])), image_size))


def _decode_points(decoder: Any, embedding: ImageEmbedding, points: Sequence[PointPrompt]) -> list:
    from batchlabel.infer.decoder import Prompt

    prompts, labels = [], []
    for point in points:
        if not point.positive:
            continue
        negatives = [p.xy for p in points if not p.positive and p.label == point.label]
        xy = np.asarray([point.xy, *negatives], np.float32)
        flags = np.asarray([1] + [0] * len(negatives), np.int32)
        prompts.append(Prompt(points=xy, point_labels=flags))
        labels.append(point.label)
    if not prompts:
        return []
    decoded = decoder.decode_many(embedding, prompts)
    return [(masks.masks[0], label, float(masks.scores[0])) for label, masks in zip(labels, decoded, strict=True)]


def rel_path_of(task: Mapping[str, Any], image_key: str = "image") -> str | None:
    """The document-root-relative path of a task's local-files image URL (``data[image_key]``, else
    ``data["image"]``, the key batchlabel's own tasks use), or None (no such key, an upload or an http URL)."""
    from batchlabel.sync.client import rel_path_from_url

    data = task.get("data") or {}
    url = data.get(image_key, data.get("image"))
    return rel_path_from_url(url) if isinstance(url, str) else None


def task_image_path(config: Config, task: Mapping[str, Any], image_key: str = "image") -> Path | None:
    """The task's image file, confined to ``storage.root`` (:func:`batchlabel.infer.confine.confine_relative`:
    links out of the root included), or None when it has no local-files URL, is missing, or leads outside (then a
    warning naming the path)."""
    from batchlabel.infer.confine import PathConfinementError, confine_relative

    rel_path = rel_path_of(task, image_key)
    if rel_path is None:
        return None
    try:
        return confine_relative(rel_path, config.storage.root)
    except PathConfinementError as error:
        if error.outside:
            log.warning("task %s: image %s not read: %s", task.get("id"), rel_path, error.reason)
        return None


def gather_boxes(config: Config, task: Mapping[str, Any], image_size: tuple[int, int]) -> list[BoxPrompt]:
    """Box prompts for the task's image from every source in ``preannotate.boxes_from``, duplicates removed."""
    pre = config.preannotate
    boxes: list[BoxPrompt] = []
    rel_path = rel_path_of(task)
    if "tasks" in pre.boxes_from:
        boxes += boxes_from_task(task, image_size)
    if "coco" in pre.boxes_from and pre.coco_file is not None and rel_path is not None:
        boxes += coco_boxes(pre.coco_file).get_boxes(rel_path)
    if "sidecar" in pre.boxes_from and (image_path := task_image_path(config, task)) is not None:
        boxes += read_sidecar(image_path, root=config.storage.root)
    unique: dict[tuple, BoxPrompt] = {}
    for box in boxes:
        unique.setdefault((box.label, tuple(round(v, 1) for v in box.box_xyxy)), box)
    return list(unique.values())


# -- prompt files ----------------------------------------------------------------------------------------------------
def _box_of(entry: Mapping[str, Any], where: str) -> tuple[float, float, float, float]:
    if "xyxy" in entry or "box_xyxy" in entry:
        values = entry.get("xyxy", entry.get("box_xyxy"))
        kind = "xyxy"
    elif "bbox" in entry:
        values = entry["bbox"]
        kind = "bbox"
    else:
        raise PromptSourceError(f"{where}: expected 'bbox' [x, y, width, height] or 'xyxy' [x1, y1, x2, y2]")
    try:
        a, b, c, d = (float(v) for v in values)
    except (TypeError, ValueError):
        raise PromptSourceError(f"{where}: {kind} must be 4 numbers, got {values!r}") from None
    box = (a, b, c, d) if kind == "xyxy" else (a, b, a + c, b + d)
    if box[2] < box[0] or box[3] < box[1]:
        raise PromptSourceError(f"{where}: box {list(box)} has negative width or height")
    return box


def sidecar_paths(image_path: Path) -> tuple[Path, Path]:
    """Where a sidecar may be: ``cat.jpg.json`` or ``cat.json`` beside ``cat.jpg``."""
    return image_path.with_name(image_path.name + ".json"), image_path.with_suffix(".json")


def read_sidecar(image_path: Path, *, root: Path | None = None) -> list[BoxPrompt]:
    """Boxes from the sidecar JSON beside ``image_path`` (none when there is no sidecar).

    Format: a list of objects, or ``{"objects": [...]}`` (``"boxes"`` also accepted), each
    ``{"label": "cat", "bbox": [x, y, width, height]}`` or ``{"label": "cat", "xyxy": [x1, y1, x2, y2]}`` in pixels
    of the oriented image. Raises :class:`PromptSourceError` naming the file for a malformed one, and (with
    ``root``, the document root) for a sidecar that is a link leading outside it.
    """
    from batchlabel.infer.confine import PathConfinementError, confine_path

    for path in sidecar_paths(Path(image_path)):
        if not path.is_file():
            continue
        if root is not None:
            try:
                confine_path(path, root)
            except PathConfinementError as error:
                raise PromptSourceError(f"{path}: sidecar not read: {error.reason}") from None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PromptSourceError(f"{path}: not readable JSON: {error}") from None
        entries = data.get("objects", data.get("boxes")) if isinstance(data, Mapping) else data
        if not isinstance(entries, list):
            raise PromptSourceError(f"{path}: expected a list of objects or {{'objects': [...]}}")
        boxes = []
        for index, entry in enumerate(entries):
            where = f"{path}: objects[{index}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("label"), str):
                raise PromptSourceError(f"{where}: expected an object with a 'label' string")
            boxes.append(BoxPrompt(entry["label"], _box_of(entry, where)))
        return boxes
    return []


class CocoBoxes:
    """Boxes of a COCO detection file, looked up by image path relative to ``storage.root``."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PromptSourceError(f"{path}: not a readable COCO JSON file: {error}") from None
        if not isinstance(data, Mapping) or not all(k in data for k in ("images", "annotations", "categories")):
            raise PromptSourceError(f"{path}: expected a COCO file with 'images', 'annotations' and 'categories'")
        categories = {c["id"]: c["name"] for c in data["categories"]}
        by_image: dict[int, list[BoxPrompt]] = {}
        for index, annotation in enumerate(data["annotations"]):
            where = f"{path}: annotations[{index}]"
            name = categories.get(annotation.get("category_id"))
            if name is None:
                raise PromptSourceError(f"{where}: unknown category_id {annotation.get('category_id')!r}")
            by_image.setdefault(annotation["image_id"], []).append(BoxPrompt(name, _box_of(annotation, where)))
        self._by_path: dict[str, list[BoxPrompt]] = {}
        names: dict[str, list[str]] = {}
        for image in data["images"]:
            file_name = PurePosixPath(str(image["file_name"]).replace("\\", "/")).as_posix()
            self._by_path[file_name] = by_image.get(image["id"], [])
            names.setdefault(PurePosixPath(file_name).name, []).append(file_name)
        self._by_name = {name: self._by_path[paths[0]] for name, paths in names.items() if len(paths) == 1}

    def get_boxes(self, rel_path: str) -> list[BoxPrompt]:
        if rel_path in self._by_path:
            return list(self._by_path[rel_path])
        return list(self._by_name.get(PurePosixPath(rel_path).name, []))


@lru_cache(maxsize=4)
def coco_boxes(path: Path) -> CocoBoxes:
    """The parsed COCO file (cached per path for the process)."""
    return CocoBoxes(path)
