"""SAM 3 (transformers' ``Sam3Model``/``Sam3Processor``) as an open-vocabulary :class:`~.base.Detector`.

Each label's prompts are text queries ("promptable concept segmentation"): SAM 3 returns every instance's mask, box
and score. The image's vision features are computed once and shared by all prompts of that image. ``model`` is a
local directory written by ``save_pretrained`` (a downloaded ``facebook/sam3`` is one) or a hub id (gated, SAM
License; downloaded once into the Hugging Face cache and read from there with no network; offline and not cached, an
error with the offline hint in seconds). On a CPU it takes ~40 s per image (full-size model):
the progress output says so. Its per-image features (54-118 MiB) are not kept; its proposals are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.annotate.detectors.base import Detection, DetectorUnavailableError, file_digest

log = logging.getLogger(__name__)

#: Measured on 2 CPU cores for the full-size model (``/work/shared/docs/model-families.md``): vision 39 s + text 8 s.
FULL_SIZE_CPU_S = 40.0
MASK_THRESHOLD = 0.5
LOCAL_HINT = ("set preannotate.detector.model to a local SAM 3 folder (config.json, weights and tokenizer files, as "
              "save_pretrained writes them)")


def _weights_digest(folder: Path) -> str:
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return file_digest(str(weights[0])) if weights else "hub"


def is_local(model: str) -> bool:
    """``preannotate.detector.model`` names a local folder (an existing path, or one written as a path), not a hub
    id."""
    return model.startswith(("/", ".", "~")) or Path(model).exists()


def verify_local_folder(model: str) -> None:
    """A local ``model`` must be a SAM 3 folder (``config.json`` beside the weights); a hub id passes.

    Raises:
        DetectorUnavailableError: naming the path.
    """
    if is_local(model) and not (Path(model) / "config.json").is_file():
        raise DetectorUnavailableError(
            f"{model}: preannotate.detector.model is not a SAM 3 model directory (expected config.json and "
            "weights written by save_pretrained, e.g. a downloaded facebook/sam3)"
        )


def _hub_folder(hub_id: str) -> Path:
    """The local snapshot of hub id ``hub_id`` (the hub's default cache; downloaded once). Offline and not cached:
    :class:`DetectorUnavailableError` with the offline hint within seconds (never the hub client's minutes of
    retries that ``from_pretrained(hub_id)`` makes)."""
    from batchlabel.infer.families.hub import fetch_hub_snapshot
    from batchlabel.infer.weights import WeightsUnavailableError

    try:
        return fetch_hub_snapshot("preannotate.detector.model", hub_id, cache_dir=None, endpoint=None,
                                  local_hint=LOCAL_HINT)
    except WeightsUnavailableError as error:
        raise DetectorUnavailableError(str(error)) from None


class Sam3Detector:
    """SAM 3 with text prompts from the label names.

    Args:
        model: a local ``save_pretrained`` directory or a hub id.
        queries: label -> text prompts (each prompt is one query; instances of all prompts of a label get it).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        max_objects: at most this many instances per prompt and image (highest scores first).
    """

    kind = "sam3"

    def __init__(self, model: str, queries: Mapping[str, tuple[str, ...]], *, device: str = "cpu",
                 max_objects: int = 100) -> None:
        verify_local_folder(model)
        local = Path(model)
        folder = local if local.exists() else _hub_folder(model)  # before transformers' import: offline in seconds
        try:
            import torch
            from transformers import Sam3Model, Sam3Processor
        except ImportError as error:
            raise DetectorUnavailableError(
                f"preannotate.detector.kind: sam3 needs transformers >= 5 with Sam3Model ({error})"
            ) from None
        try:
            self._processor = Sam3Processor.from_pretrained(folder)
            self._model = Sam3Model.from_pretrained(folder)
            self._model.to(torch.device(device)).eval()  # type: ignore[arg-type]  # transformers types .to oddly
        except (OSError, ValueError) as error:
            raise DetectorUnavailableError(
                f"{model}: cannot load SAM 3 (preannotate.detector.model): {str(error).splitlines()[0]}"
            ) from None
        self._torch = torch
        self.queries: Mapping[str, tuple[str, ...]] = dict(queries)
        self.device = device
        self.max_objects = max_objects
        # every label's prompts tokenized once (they are the same for every image), kept on the device
        self._prompt_tokens = []
        for label, prompts in self.queries.items():
            for prompt in prompts:
                text = self._processor(text=prompt, return_tensors="pt")
                self._prompt_tokens.append(
                    (label, text["input_ids"].to(device), text["attention_mask"].to(device))
                )
        self.detector_id = f"sam3:{local.name or model}@{_weights_digest(folder)}"
        params = sum(p.numel() for p in self._model.parameters())
        self.slow_on_cpu_s = FULL_SIZE_CPU_S * min(1.0, params / 840e6) if device == "cpu" else 0.0

    def detect(self, images: Sequence[np.ndarray], *, min_score: float) -> list[list[Detection]]:
        """Every instance of every label's prompts in each HWC uint8 RGB image; masks (H, W) bool at image size."""
        return [self._detect_one(image, min_score) for image in images]

    def _detect_one(self, image: np.ndarray, min_score: float) -> list[Detection]:
        torch = self._torch
        height, width = image.shape[:2]
        with torch.inference_mode():
            pixels = self._processor(images=image, return_tensors="pt")
            vision = self._model.get_vision_features(pixel_values=pixels["pixel_values"].to(self.device))
            found: list[Detection] = []
            for label, input_ids, attention_mask in self._prompt_tokens:
                outputs = self._model(vision_embeds=vision, input_ids=input_ids, attention_mask=attention_mask)
                found += self._instances(outputs, label, min_score, (height, width))
        return found

    def _instances(self, outputs: Any, label: str, min_score: float, size: tuple[int, int]) -> list[Detection]:
        result = self._processor.post_process_instance_segmentation(
            outputs, threshold=min_score, mask_threshold=MASK_THRESHOLD, target_sizes=[size],
        )[0]
        scores = result["scores"].float().cpu().numpy()
        order = np.argsort(-scores)[: self.max_objects]
        boxes = result["boxes"].float().cpu().numpy()
        masks = result["masks"].cpu().numpy().astype(bool)
        height, width = size
        detections = []
        for index in order.tolist():
            x1, y1, x2, y2 = (float(v) for v in boxes[index])
            box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
                   min(max(y2, 0.0), height))
            detections.append(Detection(label, box, float(scores[index]), masks[index]))
        return detections
