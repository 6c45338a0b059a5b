"""``preannotate.mode: detect``: a detector's labelled boxes -> SAM masks on the image's cached embedding.

Per image:

1. Proposals: the detector's detections, computed once per (image sha256, detector, queries, thresholds) and kept in
   :class:`~batchlabel.annotate.proposals.ProposalStore` (``<cache.dir>/proposals``); re-runs and serve's batch
   ``/predict`` read them back. The detector runs on the image file (``storage.root`` + the task's path) at its
   lowest per-label threshold.
2. Filtering: only the project's labels (:func:`project_labelled`; a stored proposal of another label is never
   pushed); each label's ``min_score``; then the **overlap rule**: proposals are taken by decreasing confidence and
   one whose box overlaps (IoU > ``overlap_iou``) an already kept proposal of *another* label is dropped (the more
   confident label wins; same-label overlaps are the detector's own NMS business); at most ``max_objects`` kept.
3. Masks: a proposal without a mask (Ultralytics) becomes a box prompt to SAM's decoder on the embedding (any model
   family); a detector's own mask (SAM 3) is used as is.
4. Score of each object (and so of its result items): ``detector confidence x SAM predicted IoU``, or the detector's
   confidence when the mask is the detector's. The rectangle output is the detector's box; brush/polygon the mask.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from batchlabel.annotate.detect_eta import SLOW_DETECTOR_S
from batchlabel.annotate.detectors.base import Detection, Detector, DetectorError, NoTrainedModelError
from batchlabel.annotate.proposals import ProposalStore, proposals_key

if TYPE_CHECKING:
    from batchlabel.config import Config, DetectorConfig
    from batchlabel.infer.embedding import ImageEmbedding

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_DETECTORS: dict[str, Detector] = {}
#: project models folder -> the cache key of its trained model in _DETECTORS (older versions are dropped)
_TRAINED_KEYS: dict[str, str] = {}
_TIMINGS: dict[str, list[float]] = {}
_WARNED_UNTRAINED: set[str] = set()  # trained model versions whose missing labels were named once


@dataclass(frozen=True)
class DetectedObject:
    """One object of a prediction: ``mask`` (H, W) bool at the embedding's size, ``box_xyxy`` pixels there."""

    mask: np.ndarray
    label: str
    score: float
    box_xyxy: tuple[float, float, float, float]


def detector_device(config: Config) -> str:
    """``preannotate.detector.device``, ``auto`` following ``model.device`` (cuda when available)."""
    from batchlabel.infer.models import resolve_device

    detector = _detector_config(config)
    return str(resolve_device(config.model.device if detector.device == "auto" else detector.device))


def _detector_config(config: Config) -> DetectorConfig:
    detector = config.preannotate.detector
    if detector is None:
        raise DetectorError("preannotate.detector: not set (mode: detect needs it)")
    return detector


def resolve_trained(config: Config, labels: Sequence[str]) -> tuple[DetectorConfig, tuple[str, ...], str | None]:
    """(the detector config to load, the labels it is asked for, the weights' name). ``model: trained`` becomes the
    project's newest model from ``batchlabel train`` (read now, so a newer model is picked up by the next call),
    asked only for the labels it was trained on (others named in a warning); other configs pass unchanged.

    Raises:
        NoTrainedModelError: ``model: trained`` and no model has been published for the project yet.
    """
    from batchlabel.annotate.trained_models import newest_model

    detector = _detector_config(config)
    if not detector.trained:
        return detector, tuple(labels), None
    model = newest_model(config.models_dir, config.label_studio.project)
    if model is None:
        raise NoTrainedModelError(
            f"preannotate.detector.model: trained: no model for project {config.label_studio.project!r} under "
            f"{config.models_dir} yet (review at least train.min_reviewed = {config.train.min_reviewed} tasks, then "
            "`batchlabel train`)"
        )
    known = tuple(label for label in labels if label in model.trained_classes)
    missing = [label for label in labels if label not in model.trained_classes]
    with _LOCK:
        first_time = missing and model.version not in _WARNED_UNTRAINED
        _WARNED_UNTRAINED.add(model.version)
    if first_time:
        log.warning("trained model %s was not trained on labels %s; it predicts only %s", model.version, missing,
                    list(known))
    return detector.model_copy(update={"model": str(model.weights), "kind": "ultralytics"}), known, model.version


def get_detector(config: Config, labels: Sequence[str]) -> Detector:
    """The process's detector for this config and labels (loaded once; thread-safe).

    Raises :class:`~batchlabel.annotate.detectors.base.DetectorError` (missing checkpoint, extra not installed,
    unknown class listing the detector's classes; :class:`NoTrainedModelError` for ``model: trained`` before the
    first ``batchlabel train``).
    """
    from batchlabel.annotate.detectors import load_detector

    detector_config, labels, name = resolve_trained(config, labels)
    device = detector_device(config)
    cache_key = json.dumps([detector_config.model_dump(mode="json"), list(labels), device], sort_keys=True)
    with _LOCK:
        detector = _DETECTORS.get(cache_key)
        if detector is None:
            started = time.perf_counter()
            detector = load_detector(detector_config, tuple(labels), cache_dir=config.cache.dir, device=device,
                                     name=name)
            log.info("detector %s loaded on %s in %.1f s (queries %s)", detector.detector_id, device,
                     time.perf_counter() - started, dict(detector.queries))
            if detector.slow_on_cpu_s >= SLOW_DETECTOR_S:
                log.warning("detector %s on the CPU: expect ~%.0f s per image (the progress ETA includes it)",
                            detector.detector_id, detector.slow_on_cpu_s)
            _DETECTORS[cache_key] = detector
            if name is not None:  # a newer trained model replaces the project's older one (a daemon adopts many)
                project_key = str(Path(detector_config.model).parent.parent)
                older = _TRAINED_KEYS.get(project_key)
                if older is not None and older != cache_key:
                    _DETECTORS.pop(older, None)
                _TRAINED_KEYS[project_key] = cache_key
    return detector


def detection_threshold(detector_config: DetectorConfig, labels: Sequence[str]) -> float:
    """The threshold the detector runs at: the lowest of the labels' ``min_score`` (filtered per label later)."""
    return min((detector_config.min_score_for(label) for label in labels), default=0.0)


def model_version_part(config: Config, labels: Sequence[str]) -> str:
    """What ``model_version`` says about the detector: id, a digest of the queries, thresholds, overlap rule."""
    import hashlib

    detector_config = _detector_config(config)
    queries = detector_config.names_for(tuple(labels))
    digest = hashlib.sha256(json.dumps(queries, sort_keys=True).encode()).hexdigest()[:8]
    score = detector_config.min_score
    scores = ",".join(f"{k}:{v:g}" for k, v in sorted(score.items())) if isinstance(score, dict) else f"{score:g}"
    return (f"det={get_detector(config, labels).detector_id} classes@{digest} conf>={scores} "
            f"overlap<={detector_config.overlap_iou:g} max={detector_config.max_objects}")


def _proposal_store(config: Config, detector: Detector) -> tuple[ProposalStore, str, float]:
    """(the store, this detector's proposals key, the threshold it detects at)."""
    detector_config = _detector_config(config)
    threshold = detection_threshold(detector_config, tuple(detector.queries))
    key = proposals_key(detector.detector_id, detector.queries, threshold, detector_config.max_objects)
    return ProposalStore(config.cache.dir / "proposals"), key, threshold


def detector_timings(detector_id: str) -> list[float]:
    """Seconds per image of each detection this process ran with ``detector_id`` (stored proposals not counted)."""
    with _LOCK:
        return list(_TIMINGS.get(detector_id, ()))


def proposals_for(config: Config, detector: Detector, image_sha256: str,
                  image_path: Path | None) -> tuple[tuple[int, int], list[Detection]]:
    """The image's stored proposals, or the detector's (stored for next time). ``image_path`` is read when needed.

    Raises :class:`DetectorError` when they are not stored and the image cannot be read.
    """
    size, detections, _ = _stored_or_detected(config, detector, image_sha256, image_path)
    return size, detections


def ensure_proposals(config: Config, detector: Detector, image_sha256: str, image_path: Path) -> bool:
    """Store the image's proposals unless they are stored already (``batchlabel encode``); True when the detector
    ran now. Raises as :func:`proposals_for`."""
    return _stored_or_detected(config, detector, image_sha256, image_path)[2]


def _stored_or_detected(config: Config, detector: Detector, image_sha256: str,
                        image_path: Path | None) -> tuple[tuple[int, int], list[Detection], bool]:
    """(image size, proposals, whether the detector ran now): one store read, a detection only on a miss."""
    from batchlabel.infer.images import ImageLoadError, load_image

    store, key, threshold = _proposal_store(config, detector)
    stored = store.get(image_sha256, key)
    if stored is not None:
        return stored[0], stored[1], False
    if image_path is None:
        raise DetectorError("mode detect: the task's image is not a local file under storage.root; cannot detect")
    try:
        loaded = load_image(image_path)
    except ImageLoadError as error:
        raise DetectorError(str(error)) from None
    started = time.perf_counter()
    detections = detector.detect([loaded.rgb], min_score=threshold)[0]
    elapsed = time.perf_counter() - started
    with _LOCK:
        timings = _TIMINGS.setdefault(detector.detector_id, [])
        timings.append(elapsed)
        mean = float(np.mean(timings))
    log.info("detect %s: %d proposal(s) in %.2f s (%s: %.2f s/image over %d image(s))", image_path.name,
             len(detections), elapsed, detector.detector_id, mean, len(timings))
    store.put(loaded.sha256, key, loaded.original_size, detections, detector_id=detector.detector_id)
    return loaded.original_size, detections, True


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select(detections: Sequence[Detection], detector_config: DetectorConfig) -> list[Detection]:
    """Per-label ``min_score``, then the overlap rule across labels, then ``max_objects`` (module docstring)."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if detection.score < detector_config.min_score_for(detection.label):
            continue
        if any(other.label != detection.label
               and _box_iou(other.box_xyxy, detection.box_xyxy) > detector_config.overlap_iou for other in kept):
            continue
        kept.append(detection)
        if len(kept) >= detector_config.max_objects:
            break
    return kept


def project_labelled(detections: Sequence[Detection], labels: Sequence[str], image: object) -> list[Detection]:
    """The detections whose label is one of the project's ``labels`` (only those become result items; a stored
    proposal of another label is logged, never pushed). ``image`` names the image in the log line."""
    known = set(labels)
    kept = [d for d in detections if d.label in known]
    if len(kept) < len(detections):
        others = sorted({d.label for d in detections if d.label not in known})
        log.info("%s: %d proposal(s) of label(s) %s the project does not have; not pushed", image,
                 len(detections) - len(kept), [label[:60] for label in others[:10]])
    return kept


def _rescale(box: Sequence[float], size_from: tuple[int, int], size_to: tuple[int, int]) -> tuple[float, ...]:
    sx, sy = size_to[1] / max(size_from[1], 1), size_to[0] / max(size_from[0], 1)
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def detect_objects(config: Config, decoder: Any, embedding: ImageEmbedding, labels: Sequence[str],
                   image_path: Path | None) -> list[DetectedObject]:
    """The labelled, masked objects of one image (see the module docstring); [] when nothing is found.

    Args:
        config: the validated config (``preannotate.detector``, ``cache.dir``).
        decoder: a ``MaskDecoder`` (``decode_many``) for the embedding's model.
        embedding: the image's cached embedding; masks and boxes are at ``embedding.original_size``.
        labels: the project's labels (the detector's queries).
        image_path: the image file, read only when its proposals are not stored yet.
    """
    from batchlabel.infer.decoder import Prompt

    detector = get_detector(config, labels)
    size, detections = proposals_for(config, detector, embedding.image_sha256, image_path)
    chosen = select(project_labelled(detections, labels, image_path or embedding.image_sha256[:12]),
                    _detector_config(config))
    if not chosen:
        log.info("%s: no object of %s found by %s; no prediction", image_path.name if image_path else
                 embedding.image_sha256[:12], list(labels), detector.detector_id)
        return []
    target = tuple(int(v) for v in embedding.original_size)
    boxes = [_rescale(d.box_xyxy, size, target) for d in chosen]  # type: ignore[arg-type]
    need_sam = [i for i, d in enumerate(chosen) if d.mask is None or d.mask.shape != target]
    decoded = decoder.decode_many(embedding, [Prompt(box=np.asarray(boxes[i], np.float32)) for i in need_sam]) \
        if need_sam else []
    by_index = dict(zip(need_sam, decoded, strict=True))
    objects = []
    for index, detection in enumerate(chosen):
        box = tuple(float(v) for v in boxes[index])
        if index in by_index:
            masks = by_index[index]
            objects.append(DetectedObject(masks.masks[0], detection.label, detection.score * float(masks.scores[0]),
                                          box))  # type: ignore[arg-type]
        else:
            assert detection.mask is not None
            objects.append(DetectedObject(detection.mask, detection.label, detection.score, box))  # type: ignore[arg-type]
    return objects

