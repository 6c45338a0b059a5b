"""What SAM 2.1 and HQ-SAM share: transformers models encoding through their own image processor, and decoding
prompts on cached features through the model's own prompt encoder + mask decoder (``forward`` with the cached
``image_embeddings``, so the arithmetic is exactly transformers').

Conventions (as in :mod:`batchlabel.infer.decoder`): prompts are pixels of the oriented image; they are scaled to
the model frame ``embedding.input_size`` per axis (``x * input_w / w``, ``y * input_h / h``), which is what both
families' processors do (SAM 2.1 resizes every image to 1024x1024; HQ-SAM resizes the longest side to 1024 and pads
bottom/right, like SAM). Masks: ``(K, 256, 256)`` low-res logits -> bool at the original size with
:func:`batchlabel.infer.upsample.upsample_masks` (thresholded at 0 on the fly, never a full-size float mask), in each
family's own resize convention (:meth:`TransformersFamily.to_masks`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from batchlabel.config import ConfigError, ModelConfig
from batchlabel.infer.decoder import (
    DEFAULT_CACHE_IMAGES,
    LOW_RES_SIZE,
    DecodedMasks,
    Prompt,
    features_fingerprint,
)
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.families.base import ModelFamily
from batchlabel.infer.families.hub import resolve_hf_folder, weights_file
from batchlabel.infer.images import LoadedImage
from batchlabel.infer.model_registry import ALL_PROMPT_KINDS
from batchlabel.infer.models import RANDOM_WEIGHTS_SEED, resolve_device, resolve_precision
from batchlabel.infer.upsample import upsample_masks
from batchlabel.infer.weights import WeightsUnavailableError, checkpoint_sha256

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HfModelSpec:
    """One registered Hugging Face-format model.

    Attributes:
        name: the configured model name, e.g. ``"sam2.1_hiera_tiny"``.
        hub_id: the official hub repository ``checkpoint: auto`` downloads.
        parameters: the official model's parameter count (documentation; the README's model table).
        tiny_config: builds the small random-weights config ``checkpoint: random`` uses (tests only).
    """

    name: str
    hub_id: str
    parameters: int
    tiny_config: Callable[[], Any] = field(compare=False, repr=False)


class TransformersFamily(ModelFamily):
    """A transformers SAM-style model as a family; subclasses say which classes and which cached arrays."""

    #: ``model_type`` in the model's ``config.json``.
    model_type: str

    def __init__(self, spec: HfModelSpec, model: PreTrainedModel, *, model_id: str, precision: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.model_id = model_id
        self.precision = precision
        self.device = next(model.parameters()).device
        self.input_size = int(model.config.prompt_encoder_config.image_size)
        self.prompt_kinds = ALL_PROMPT_KINDS
        self.processor = self.image_processor()
        self._feature_cache: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
        self._feature_lock = threading.Lock()

    # -- to implement --------------------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def model_class() -> type[PreTrainedModel]:
        """The transformers model class (imported when called)."""

    @abstractmethod
    def image_processor(self) -> Any:
        """The family's transformers image processor with its default (official) settings."""

    @abstractmethod
    def input_frame(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of the image inside the model's input after resizing, before padding."""

    @abstractmethod
    def features(self, pixel_values: Tensor) -> dict[str, Tensor]:
        """The named arrays to cache for a ``(1, 3, S, S)`` input, ``"image_embed"`` first."""

    @abstractmethod
    def low_res(self, features: dict[str, Tensor], prompts: dict[str, Tensor], *, multimask: bool) -> Any:
        """The model's output (``pred_masks`` ``(1, 1, K, 256, 256)``, ``iou_scores`` ``(1, 1, K)``) for prompts
        in the model's ``forward`` format on cached ``features``."""

    # -- ModelFamily ---------------------------------------------------------------------------------------------
    def encode(self, loaded: LoadedImage) -> ImageEmbedding:
        pixels, input_size = self.prepare(np.asarray(loaded.rgb))
        arrays = self.encode_pixels(pixels[None])  # batch of one: every array keeps its leading axis of 1
        return ImageEmbedding(
            features=arrays.pop("image_embed"),
            extras=arrays,
            original_size=(int(loaded.rgb.shape[0]), int(loaded.rgb.shape[1])),
            input_size=input_size,
            model_id=self.model_id,
            precision=self.precision,
            image_sha256=loaded.sha256,
            exif_orientation=loaded.exif_orientation,
        )

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """One ``(H, W, 3)`` uint8 RGB image -> the model input ``(3, S, S)`` float32 from the family's own image
        processor (resized, normalised, padded), and ``(h, w)`` of the image inside it (:meth:`input_frame`)."""
        pixels = self.processor(images=np.array(rgb), return_tensors="np")["pixel_values"][0]
        return np.ascontiguousarray(pixels, dtype=np.float32), self.input_frame((int(rgb.shape[0]), int(rgb.shape[1])))

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, 3, S, S)`` float32 model inputs (:meth:`prepare`) -> the named feature arrays, each ``(B, ...)``
        float32, ``"image_embed"`` first."""
        with torch.inference_mode(), self._autocast():
            named = self.features(torch.from_numpy(pixels).to(self.device))
        return {name: tensor.float().cpu().numpy() for name, tensor in named.items()}

    def decode(self, embedding: ImageEmbedding, prompt: Prompt, *, multimask: bool = False) -> DecodedMasks:
        logits, scores = self.low_res_batch(embedding, [prompt], multimask=multimask)
        return DecodedMasks(
            masks=self.to_masks(embedding, logits[0]),
            scores=scores[0].numpy().astype(np.float32),
            low_res_logits=logits[0].numpy(),
        )

    def low_res_batch(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Low-res logits ``(B, K, 256, 256)`` and scores ``(B, K)`` (float32, CPU) for ``B`` prompts of one
        :attr:`Prompt.structure`, decoded in one forward as the model's point batch. ``K=3`` sorted by decreasing
        score with ``multimask``; else ``K=1`` (the best of three for a lone point, see :meth:`decode`)."""
        if len({prompt.structure for prompt in prompts}) != 1:
            raise ValueError("low_res_batch needs prompts with the same number of points, box and mask presence")
        self.check(embedding, prompts[0])
        ambiguous = prompts[0].ambiguous
        features = self._feature_tensors(embedding)
        if prompts[0].mask_logits is not None and len(prompts) > 1:  # mask prompts are per image, not per point batch
            parts = [self.low_res_batch(embedding, [prompt], multimask=multimask) for prompt in prompts]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        with torch.inference_mode(), self._autocast():
            output = self.low_res(features, self.prompt_tensors(embedding, prompts), multimask=multimask or ambiguous)
        logits = output.pred_masks[0].float().cpu()  # (B, K, 256, 256)
        scores = output.iou_scores[0].float().cpu()  # (B, K)
        order = torch.argsort(scores, dim=1, descending=True)
        if not multimask and ambiguous:
            order = order[:, :1]
        logits = torch.take_along_dim(logits, order[:, :, None, None], dim=1).contiguous()
        return logits, torch.take_along_dim(scores, order, dim=1).contiguous()

    def to_masks(self, embedding: ImageEmbedding, logits: Tensor) -> np.ndarray:
        """``(K, 256, 256)`` low-res logits -> ``(K, H, W)`` bool at ``embedding.original_size``: SAM's two
        bilinear resizes (to the padded input, crop ``input_size``, to the original size), thresholded on the fly."""
        return upsample_masks(
            logits, original_size=embedding.original_size, input_size=embedding.input_size, padded_size=self.input_size
        )

    # -- helpers -------------------------------------------------------------------------------------------------
    def prompt_tensors(self, embedding: ImageEmbedding, prompts: Sequence[Prompt]) -> dict[str, Tensor]:
        """``B`` prompts of one structure in the model's ``forward`` format, scaled to the model frame:
        ``input_points`` ``(1, B, N, 2)``, ``input_labels`` ``(1, B, N)``, ``input_boxes`` ``(1, B, 4)`` XYXY,
        ``input_masks`` ``(B, 1, 256, 256)``. A mask-only prompt gets one padding point (label -1), as SAM's own
        predictors add."""
        (h, w), (input_h, input_w) = embedding.original_size, embedding.input_size
        scale = np.array([input_w / w, input_h / h], dtype=np.float64)
        first = prompts[0]
        count = len(prompts)
        tensors: dict[str, Tensor] = {}
        if first.points is not None:
            points = np.stack([np.asarray(p.points, dtype=np.float64) * scale for p in prompts]).astype(np.float32)
            labels = np.stack([np.asarray(p.point_labels, dtype=np.int64) for p in prompts])
            tensors["input_points"] = torch.from_numpy(points)[None]
            tensors["input_labels"] = torch.from_numpy(labels)[None]
        if first.box is not None:
            boxes = np.stack([np.asarray(p.box, dtype=np.float64).reshape(2, 2) * scale for p in prompts])
            tensors["input_boxes"] = torch.from_numpy(boxes.astype(np.float32).reshape(1, count, 4))
        if first.points is None and first.box is None:
            tensors["input_points"] = torch.zeros((1, count, 1, 2), dtype=torch.float32)
            tensors["input_labels"] = -torch.ones((1, count, 1), dtype=torch.int64)
        if first.mask_logits is not None:
            masks = np.stack([np.asarray(p.mask_logits, dtype=np.float32).reshape(1, LOW_RES_SIZE, LOW_RES_SIZE)
                              for p in prompts])
            tensors["input_masks"] = torch.from_numpy(masks)
        return {name: tensor.to(self.device) for name, tensor in tensors.items()}

    def _feature_tensors(self, embedding: ImageEmbedding) -> dict[str, Tensor]:
        """The embedding's arrays as float32 tensors on the device, kept for the last few images (a click on the
        same image does not convert 8 MiB of fp16 again)."""
        key = features_fingerprint(embedding)
        with self._feature_lock:
            cached = self._feature_cache.get(key)
            if cached is not None:
                self._feature_cache.move_to_end(key)
                return cached
        tensors = {
            name: torch.from_numpy(np.array(array, dtype=np.float32)).to(self.device)
            for name, array in {"image_embed": embedding.features, **embedding.extras}.items()
        }
        with self._feature_lock:
            self._feature_cache[key] = tensors
            while len(self._feature_cache) > DEFAULT_CACHE_IMAGES:
                self._feature_cache.popitem(last=False)
        return tensors

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """bf16/fp16 autocast on CUDA when so configured; fp32 otherwise."""
        if self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield

    @classmethod
    def load(cls, spec: HfModelSpec, model_config: ModelConfig) -> TransformersFamily:
        """Build ``spec``'s model from ``model_config.checkpoint`` (hub id, folder, auto or random) on the
        configured device.

        Raises:
            WeightsUnavailableError: weights not found, not downloadable, or of another model type.
            ConfigError: random weights without ``allow_random_weights``, or an impossible device.
        """
        device = resolve_device(model_config.device)
        precision = resolve_precision(model_config.precision, device)
        model_class = cls.model_class()
        if model_config.checkpoint == "random":
            if not model_config.allow_random_weights:
                raise ConfigError("model.checkpoint: random is for tests only; set model.allow_random_weights: true")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = model_class(spec.tiny_config())
            model_id = f"{spec.name}@random"
            log.warning("%s: using RANDOM weights of a tiny config (test-only switch)", spec.name)
        else:
            folder = resolve_hf_folder(
                spec.name,
                spec.hub_id,
                model_config.checkpoint,
                weights_dir=model_config.weights_dir,
                endpoint=model_config.download_url,
            )
            cls._check_model_type(folder, spec)
            model = model_class.from_pretrained(folder)
            model_id = f"{spec.name}@{checkpoint_sha256(weights_file(folder))[:8]}"
        model.to(device)  # type: ignore[arg-type]
        log.info("loaded %s on %s (%s)", model_id, device, precision)
        return cls(spec, model, model_id=model_id, precision=precision)

    @classmethod
    def _check_model_type(cls, folder: Path, spec: HfModelSpec) -> None:
        try:
            model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError) as exc:
            raise WeightsUnavailableError(f"{folder / 'config.json'}: not a readable model config ({exc})") from None
        if model_type != cls.model_type:
            raise WeightsUnavailableError(
                f"{folder / 'config.json'}: model_type {model_type!r}, but {spec.name} needs a {cls.model_type!r} "
                f"model (e.g. {spec.hub_id})"
            )
