"""Prompt decoder: a pure function of (embedding, prompts) -> masks, on a cached :class:`ImageEmbedding`.

Unlike ``segment_anything.SamPredictor`` there is no per-image state: a :class:`MaskDecoder` holds only the model and a
small thread-safe cache of prompt-independent tensors, so several annotators can decode on different images at once.

Conventions:
- Prompts are in pixels of the oriented image (``embedding.original_size``): points ``(x, y)``, boxes ``XYXY``. They are
  scaled to the model frame (``embedding.input_size``) exactly like ``ResizeLongestSide.apply_coords``.
- Masks come back as ``bool`` ``(K, H, W)`` at ``original_size``. They are computed from the low-res logits with
  SAM's two bilinear resizes (256 -> padded input size, crop to ``input_size``, -> original size) but only on the
  region where the mask can be positive, and thresholded there: no full-size float masks are materialised
  (:mod:`batchlabel.infer.upsample`).

The runtime-independent parts (prompt validation, coordinate transforms, mask selection, upsampling) live in
:class:`DecoderBase`; :class:`MaskDecoder` (torch) and ``onnx_decoder.CachedOnnxMaskDecoder`` only produce low-res
logits.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.sam_mask_decoder import ImageSide, image_side_tensors, interleave_logits, predict_mask_tokens
from batchlabel.infer.upsample import upsample_masks

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

logger = logging.getLogger(__name__)

#: Side of SAM's low-resolution mask logits (4x the 64x64 embedding grid).
LOW_RES_SIZE = 256
PROMPT_KINDS = ("point", "box", "mask")
#: Default number of images whose prompt-independent decoder tensors are kept (about 12 MiB each, fp32 on CPU).
DEFAULT_CACHE_IMAGES = 8


_thread_state = threading.local()


@contextmanager
def decode_threads(count: int | None) -> Iterator[None]:
    """Hint for decoders with their own thread pools (ONNX Runtime): decode on ``count`` intra-op threads in the
    block, on the calling thread only (``None``: the decoder's default). The torch decoder follows
    ``torch.set_num_threads`` instead."""
    previous = getattr(_thread_state, "threads", None)
    _thread_state.threads = count
    try:
        yield
    finally:
        _thread_state.threads = previous


def current_decode_threads() -> int | None:
    """The calling thread's :func:`decode_threads` hint, or None."""
    return getattr(_thread_state, "threads", None)


@dataclass(frozen=True)
class Prompt:
    """One prompt on one image. At least one of ``points``, ``box`` or ``mask_logits`` is set.

    Attributes:
        points: ``(N, 2)`` float32 ``(x, y)`` pixels in the oriented image, or None.
        point_labels: ``(N,)`` int32, 1 = positive (foreground), 0 = negative (background); required with points.
        box: ``(4,)`` float32 ``XYXY`` pixels in the oriented image, or None.
        mask_logits: ``(1, 256, 256)`` float32 low-res logits of a previous decode to refine
            (``DecodedMasks.low_res_logits[i : i + 1]``), or None.
    """

    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask_logits: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.points is None and self.box is None and self.mask_logits is None:
            raise ValueError("a prompt needs points, a box or mask_logits; got none of them")
        if self.points is not None:
            points = np.asarray(self.points, dtype=np.float32)
            if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
                raise ValueError(f"points must be (N, 2) (x, y) pixels with N >= 1, got shape {points.shape}")
            if not np.isfinite(points).all():
                raise ValueError("points must be finite numbers")
            if self.point_labels is None:
                raise ValueError("point_labels (N,) 1=positive 0=negative are required with points")
            labels = np.asarray(self.point_labels)
            if labels.shape != (points.shape[0],):
                raise ValueError(f"point_labels must have shape ({points.shape[0]},), got {labels.shape}")
            if not np.isin(labels, (0, 1)).all():
                raise ValueError(
                    f"point_labels must be 1 (positive) or 0 (negative), got {sorted(set(labels.tolist()))}"
                )
            object.__setattr__(self, "points", points)
            object.__setattr__(self, "point_labels", labels.astype(np.int32))
        elif self.point_labels is not None:
            raise ValueError("point_labels given without points")
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise ValueError(f"box must be 4 finite numbers XYXY, got {np.asarray(self.box).tolist()}")
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"box must be XYXY with x2 >= x1 and y2 >= y1, got {box.tolist()}")
            object.__setattr__(self, "box", box)
        if self.mask_logits is not None:
            logits = np.asarray(self.mask_logits, dtype=np.float32)
            if logits.ndim == 2:
                logits = logits[None]
            if logits.shape != (1, LOW_RES_SIZE, LOW_RES_SIZE):
                raise ValueError(f"mask_logits must be (1, 256, 256) low-res logits, got shape {logits.shape}")
            object.__setattr__(self, "mask_logits", logits)

    @property
    def kinds(self) -> frozenset[str]:
        """The prompt kinds used: a subset of ``{"point", "box", "mask"}``."""
        used = set()
        if self.points is not None:
            used.add("point")
        if self.box is not None:
            used.add("box")
        if self.mask_logits is not None:
            used.add("mask")
        return frozenset(used)

    @property
    def structure(self) -> tuple[int, bool, bool]:
        """``(number of points, has box, has mask)``: prompts of equal structure decode in one batch."""
        return (0 if self.points is None else len(self.points), self.box is not None, self.mask_logits is not None)

    @property
    def ambiguous(self) -> bool:
        """A single point and nothing else: SAM's multimask candidates are better than its single-mask output."""
        return self.structure[:2] == (1, False)


@dataclass(frozen=True)
class DecodedMasks:
    """Masks decoded from one prompt.

    Attributes:
        masks: ``(K, H, W)`` bool at the embedding's ``original_size`` (oriented image).
        scores: ``(K,)`` float32 predicted IoU, in decreasing order when ``K > 1``.
        low_res_logits: ``(K, 256, 256)`` float32 logits in the padded model frame (feed back as ``mask_logits``).
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


@dataclass(frozen=True)
class LowRes:
    """Low-res output for a batch of prompts with the same structure, before upsampling.

    Attributes:
        logits: ``(B, K, 256, 256)`` float32 tensor on the CPU (``layout == "image"``), or, as a decoder's
            :meth:`DecoderBase._low_res` may return them, ``(B, 65536, K)`` in SAM's token order before the pixels
            are interleaved (``layout == "tokens"``, see :func:`~batchlabel.infer.sam_mask_decoder.upscale_tokens`);
            :func:`select_masks` picks the wanted masks first and returns the image layout, so only those are
            interleaved.
        scores: ``(B, K)`` float32 tensor of predicted IoU.
        layout: ``"image"`` or ``"tokens"``.
    """

    logits: Tensor
    scores: Tensor
    layout: Literal["image", "tokens"] = "image"


def features_fingerprint(embedding: ImageEmbedding) -> str:
    """A cheap content key for the embedding (image sha256 + model + a sparse sample of the features)."""
    sample = np.ascontiguousarray(embedding.features[0, :, ::16, ::16])
    digest = hashlib.blake2b(sample.tobytes(), digest_size=8).hexdigest()
    return f"{embedding.image_sha256}:{embedding.model_id}:{embedding.precision}:{digest}"


class DecoderBase:
    """Backend-independent decoding: validation, coordinate transforms, batching, mask selection and upsampling.

    Subclasses implement :meth:`_low_res` for a batch of prompts that share one structure.
    """

    def __init__(self, *, input_size: int, prompt_kinds: Sequence[str] = PROMPT_KINDS, model_id: str | None = None):
        unknown = set(prompt_kinds) - set(PROMPT_KINDS)
        if unknown:
            raise ValueError(f"unknown prompt kinds {sorted(unknown)}; expected a subset of {list(PROMPT_KINDS)}")
        self.input_size = int(input_size)
        self.prompt_kinds = frozenset(prompt_kinds)
        self.model_id = model_id

    # -- to implement --------------------------------------------------------------------------------------------
    def _low_res(
        self, embedding: ImageEmbedding, coords: np.ndarray | None, labels: np.ndarray | None, masks: np.ndarray | None
    ) -> LowRes:
        """Decode ``B`` prompts of one structure. Returns all mask tokens (K=4 for SAM: single-mask token first).

        Args:
            coords: ``(B, N, 2)`` float32 points in the model frame (box corners last, SAM's ``+0.5`` not applied),
                or None (mask-only prompts).
            labels: ``(B, N)`` float32 labels (1/0 points, 2/3 box corners, -1 padding point), or None.
            masks: ``(B, 1, 256, 256)`` float32 mask logits, or None.
        """
        raise NotImplementedError

    # -- public API ----------------------------------------------------------------------------------------------
    def decode(self, embedding: ImageEmbedding, prompt: Prompt, *, multimask: bool = False) -> DecodedMasks:
        """Decode one prompt on one embedding.

        With ``multimask=False`` one mask comes back: SAM's single-mask output when the prompt has two or more points
        or a box (non-ambiguous), the best-scoring of the three multimask candidates for a lone point (SAM's own
        choice for an ambiguous click). With ``multimask=True`` the three candidates come back sorted by score.
        """
        return self.decode_many(embedding, [prompt], multimask=multimask)[0]

    def decode_many(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False, max_batch: int = 64
    ) -> list[DecodedMasks]:
        """Decode many prompts on one embedding, batching prompts of equal structure; results in input order."""
        results = self.decode_low_res(embedding, prompts, multimask=multimask, max_batch=max_batch)
        return [
            DecodedMasks(
                masks=self.to_masks(embedding, low.logits[0]),
                scores=low.scores[0].numpy().astype(np.float32),
                low_res_logits=low.logits[0].numpy().astype(np.float32),
            )
            for low in results
        ]

    def decode_low_res(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False, max_batch: int = 64
    ) -> list[LowRes]:
        """Like :meth:`decode_many` but stop at low-res logits: one :class:`LowRes` with ``B=1`` per prompt."""
        results: list[LowRes | None] = [None] * len(prompts)
        groups: dict[tuple[int, bool, bool], list[int]] = {}
        for index, prompt in enumerate(prompts):
            self._check_kinds(prompt)
            groups.setdefault(prompt.structure, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), max_batch):
                chunk = indices[start : start + max_batch]
                batch = self.decode_batch(embedding, [prompts[i] for i in chunk], multimask=multimask)
                for row, index in enumerate(chunk):
                    results[index] = LowRes(batch.logits[row : row + 1], batch.scores[row : row + 1])
        return [result for result in results if result is not None]

    def decode_batch(self, embedding: ImageEmbedding, prompts: Sequence[Prompt], *, multimask: bool = False) -> LowRes:
        """Decode prompts that all share one :attr:`Prompt.structure` in one batch.

        Returns:
            :class:`LowRes` with ``logits`` ``(B, K, 256, 256)`` and ``scores`` ``(B, K)``: ``K=3`` sorted by
            decreasing score with ``multimask``, else ``K=1`` (see :meth:`decode`).
        """
        if len({prompt.structure for prompt in prompts}) != 1:
            raise ValueError("decode_batch needs prompts with the same number of points, box and mask presence")
        self._check_embedding(embedding)
        self._check_kinds(prompts[0])
        coords, labels, masks = self._prompt_arrays(embedding, prompts)
        raw = self._low_res(embedding, coords, labels, masks)
        return select_masks(raw, multimask=multimask, ambiguous=prompts[0].ambiguous)

    def to_masks(self, embedding: ImageEmbedding, logits: Tensor) -> np.ndarray:
        """``(K, 256, 256)`` low-res logits -> ``(K, H, W)`` bool masks at ``embedding.original_size``."""
        return upsample_masks(
            logits, original_size=embedding.original_size, input_size=embedding.input_size, padded_size=self.input_size
        )

    # -- helpers -------------------------------------------------------------------------------------------------
    def _check_embedding(self, embedding: ImageEmbedding) -> None:
        if self.model_id is not None and embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding of image {embedding.image_sha256[:12]} was made by {embedding.model_id!r}, "
                f"this decoder belongs to {self.model_id!r}; re-encode the image with this model"
            )
        if max(embedding.input_size) != self.input_size:
            raise ValueError(
                f"embedding input_size {embedding.input_size} does not fit this model's input side {self.input_size}"
            )

    def _check_kinds(self, prompt: Prompt) -> None:
        unsupported = prompt.kinds - self.prompt_kinds
        if unsupported:
            model = self.model_id or "this model"
            raise ValueError(
                f"{model} does not support {'/'.join(sorted(unsupported))} prompts "
                f"(it supports: {', '.join(sorted(self.prompt_kinds))})"
            )

    def _prompt_arrays(
        self, embedding: ImageEmbedding, prompts: Sequence[Prompt]
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Stack prompts into model-frame arrays like ``SamPredictor`` + ``PromptEncoder`` (padding point if no box)."""
        (h, w), (new_h, new_w) = embedding.original_size, embedding.input_size
        scale = np.array([new_w / w, new_h / h], dtype=np.float64)
        n_points, has_box, has_mask = prompts[0].structure
        coords = labels = masks = None
        if n_points or has_box:
            coord_rows, label_rows = [], []
            for prompt in prompts:
                parts, part_labels = [], []
                if prompt.points is not None and prompt.point_labels is not None:
                    parts.append(prompt.points.astype(np.float64) * scale)
                    part_labels.append(prompt.point_labels.astype(np.float32))
                if prompt.box is not None:
                    parts.append(prompt.box.astype(np.float64).reshape(2, 2) * scale)
                    part_labels.append(np.array([2, 3], dtype=np.float32))
                else:
                    parts.append(np.zeros((1, 2)))
                    part_labels.append(np.array([-1], dtype=np.float32))
                coord_rows.append(np.concatenate(parts).astype(np.float32))
                label_rows.append(np.concatenate(part_labels))
            coords, labels = np.stack(coord_rows), np.stack(label_rows)
        if has_mask:
            masks = np.stack([np.asarray(prompt.mask_logits) for prompt in prompts]).astype(np.float32)
        return coords, labels, masks


def selected_tokens(scores: Tensor, *, multimask: bool, ambiguous: bool) -> Tensor:
    """Which mask tokens SAM answers with (see :meth:`DecoderBase.decode`): ``(B, K')`` int64 indices into the
    4 tokens of ``scores`` ``(B, 4)``; the three multimask tokens sorted by decreasing score with ``multimask``,
    the best of them for an ambiguous prompt, else token 0 (the single-mask output)."""
    if multimask:
        return torch.argsort(scores[:, 1:], dim=1, descending=True) + 1
    if ambiguous:
        return (torch.argmax(scores[:, 1:], dim=1) + 1)[:, None]
    return torch.zeros((scores.shape[0], 1), dtype=torch.long)


def select_masks(raw: LowRes, *, multimask: bool, ambiguous: bool) -> LowRes:
    """Pick SAM's outputs from all mask tokens (:func:`selected_tokens`); returns image-layout logits."""
    index = selected_tokens(raw.scores, multimask=multimask, ambiguous=ambiguous)
    scores = torch.take_along_dim(raw.scores, index, dim=1)
    if raw.layout == "tokens":
        logits = interleave_logits(torch.take_along_dim(raw.logits, index[:, None, :], dim=2))
    else:
        logits = torch.take_along_dim(raw.logits, index[:, :, None, None], dim=1)
    return LowRes(logits.contiguous(), scores.contiguous())


class MaskDecoder(DecoderBase):
    """SAM's prompt encoder + mask decoder in torch, on cached embeddings. Pure and thread-safe.

    Args:
        sam: a ``segment_anything.modeling.Sam`` in eval mode (only the prompt encoder and mask decoder are used).
        input_size: the model's square input side (1024 for SAM / MobileSAM, 256 for LiteMedSAM).
        prompt_kinds: prompt kinds the weights support, e.g. ``("box", "mask")`` for LiteMedSAM.
        model_id: if given, embeddings from another model are refused.
        cache_images: how many images' prompt-independent tensors to keep (LRU, about 12 MiB each); 0 disables.
    """

    def __init__(
        self,
        sam: Sam,
        *,
        input_size: int,
        prompt_kinds: Sequence[str] = PROMPT_KINDS,
        model_id: str | None = None,
        cache_images: int = DEFAULT_CACHE_IMAGES,
    ) -> None:
        super().__init__(input_size=input_size, prompt_kinds=prompt_kinds, model_id=model_id)
        self.sam = sam.eval()
        self.device = next(sam.mask_decoder.parameters()).device
        self.dtype = next(sam.mask_decoder.parameters()).dtype
        self.cache_images = cache_images
        self._cache: OrderedDict[str, ImageSide] = OrderedDict()
        self._lock = threading.Lock()
        self._pe: Tensor | None = None

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> MaskDecoder:
        """Build from a ``batchlabel.infer.models.LoadedModel`` (its ``sam``, ``spec`` and ``model_id``)."""
        return cls(
            model.sam,
            input_size=model.spec.input_size,
            prompt_kinds=model.spec.prompt_kinds,
            model_id=model.model_id,
            **kwargs,
        )

    # -- prompt-independent work ---------------------------------------------------------------------------------
    def _dense_pe(self) -> Tensor:
        pe = self._pe
        if pe is None:
            pe = self.sam.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()
            self._pe = pe
        return pe

    def _image_side(self, src: Tensor) -> ImageSide:
        """Layer-1 projections of ``src`` ``(b, C, h, w)`` (image embedding + dense prompt embedding)."""
        return image_side_tensors(self.sam, src, self._dense_pe())

    def _features(self, embedding: ImageEmbedding) -> Tensor:
        return torch.from_numpy(np.array(embedding.features)).to(self.device, self.dtype)

    def image_side(self, embedding: ImageEmbedding) -> ImageSide:
        """Cached prompt-independent tensors for prompts without ``mask_logits`` (LRU by content key)."""
        key = features_fingerprint(embedding)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        no_mask = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        with torch.inference_mode():
            side = self._image_side(self._features(embedding) + no_mask)
        if self.cache_images > 0:
            with self._lock:
                self._cache[key] = side
                while len(self._cache) > self.cache_images:
                    self._cache.popitem(last=False)
        return side

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- the decoder ---------------------------------------------------------------------------------------------
    def _low_res(
        self, embedding: ImageEmbedding, coords: np.ndarray | None, labels: np.ndarray | None, masks: np.ndarray | None
    ) -> LowRes:
        prompt_encoder = self.sam.prompt_encoder
        with torch.inference_mode():
            if masks is None:
                side = self.image_side(embedding)
            else:
                dense = prompt_encoder.mask_downscaling(torch.from_numpy(masks).to(self.device, self.dtype))
                side = self._image_side(self._features(embedding) + dense)
            batch = len(coords) if coords is not None else len(masks)  # type: ignore[arg-type]
            if coords is not None and labels is not None:
                sparse = self._embed_sparse(torch.from_numpy(coords), torch.from_numpy(labels))
            else:
                sparse = torch.empty((batch, 0, prompt_encoder.embed_dim), device=self.device, dtype=self.dtype)
            logits, scores = self._predict(side, sparse)
        return LowRes(logits.float().cpu(), scores.float().cpu(), layout="tokens")

    def _embed_sparse(self, coords: Tensor, labels: Tensor) -> Tensor:
        """``PromptEncoder._embed_points`` for prepared points (padding point and box corners already included)."""
        pe_layer = self.sam.prompt_encoder.pe_layer
        coords = coords.to(self.device, torch.float32) + 0.5
        labels = labels.to(self.device)
        embedding = pe_layer.forward_with_coords(coords, self.sam.prompt_encoder.input_image_size)
        prompt_encoder = self.sam.prompt_encoder
        embedding[labels == -1] = 0.0
        embedding[labels == -1] += prompt_encoder.not_a_point_embed.weight
        for label in range(prompt_encoder.num_point_embeddings):
            embedding[labels == label] += prompt_encoder.point_embeddings[label].weight
        return embedding.to(self.dtype)

    def _predict(self, side: ImageSide, sparse: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, 65536, 4)`` of all mask tokens in token layout and scores ``(B, 4)``
        (:func:`~batchlabel.infer.sam_mask_decoder.predict_mask_tokens`)."""
        return predict_mask_tokens(self.sam, side, sparse)
