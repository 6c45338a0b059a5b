"""The engine factory: model + embedding store + encoder + decoder from the model and cache config, in one place.

Every command that embeds or decodes builds its engine here (:func:`build_engine`), so the store's byte cap
(``cache.max_bytes``), the ONNX folder (``cache.onnx_dir``) and the runtime choice (``model.runtime``) are read once.

Decoders (:func:`select_decoder`): batch pre-annotation and ``--mask-boxes`` use the torch
:class:`~batchlabel.infer.decoder.MaskDecoder`. Interactive clicks (``batchlabel serve``), on the CPU in fp32 with
``model.runtime`` auto or onnx, use :class:`~batchlabel.infer.onnx_decoder.CachedOnnxMaskDecoder`: the image side from
torch, cached per image, and only the prompt-dependent graph on ONNX Runtime (LiteMedSAM box, low-res: about 25-30 ms
on 2 cores against about 40 ms for the torch decoder; masks equal the torch decoder's, tested at IoU >= 0.99 against it
and ``SamPredictor``). That graph is the one ``batchlabel export-onnx`` writes into ``<cache.dir>/onnx``, exported on
first use otherwise. Anywhere else (``model.runtime: torch``, CUDA, bf16/fp16, no onnxruntime, a failed export) the
torch decoder.

Model families (:mod:`batchlabel.infer.families`: SAM 2.1, HQ-SAM on transformers): :func:`load_engine_model` gives
their :class:`~batchlabel.infer.families.hf.TransformersFamily`, and the same :class:`BatchEncoder` encodes through
its :class:`~batchlabel.infer.families.runtime.FamilyRuntime` (the family's processor and image encoder, named
extras into the store) while :class:`~batchlabel.infer.families.decoder.FamilyDecoder` decodes for every caller
(batch and interactive alike: no ONNX prompt graph for these families yet).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from batchlabel.infer.decoder import DecoderBase, MaskDecoder

if TYPE_CHECKING:
    from batchlabel.config import CacheConfig, ModelConfig
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.families.hf import TransformersFamily
    from batchlabel.infer.models import LoadedModel
    from batchlabel.infer.store import EmbeddingStore

log = logging.getLogger(__name__)

DecoderKind = Literal["none", "batch", "interactive"]


def select_decoder(model: LoadedModel, *, runtime: str, onnx_dir: Path) -> DecoderBase:
    """The interactive decoder for a ``LoadedModel``: see the module docstring. ``runtime`` is ``model.runtime``."""
    usable = (
        runtime in ("auto", "onnx")
        and model.device.type == "cpu"
        and model.precision == "fp32"
        and importlib.util.find_spec("onnxruntime") is not None
    )
    if usable:
        from batchlabel.infer.onnx_decoder import CachedOnnxMaskDecoder

        try:
            decoder = CachedOnnxMaskDecoder.from_model(model, cache_dir=onnx_dir)
        except Exception as exc:  # noqa: BLE001 - any export/load failure: the torch decoder gives the same masks
            log.warning(
                "ONNX prompt decoder unavailable for %s (%s); clicks use the torch decoder", model.model_id, exc
            )
        else:
            log.info("clicks decode with the ONNX Runtime prompt-side graph %s", decoder.path)
            return decoder
    return MaskDecoder.from_model(model)


@dataclass(frozen=True)
class Engine:
    """What a command embeds and decodes with.

    Attributes:
        model: the loaded model (shared, read-only): a ``segment_anything`` model or a transformers family.
        store: the embedding store under ``cache.embeddings_dir`` (``cache.max_bytes`` cap).
        encoder: files/images -> embeddings; consults and fills ``store`` unless built with ``encoder_store=False``.
        decoder: embedding + prompt -> masks, or None when built with ``decoder="none"``.
    """

    model: LoadedModel | TransformersFamily
    store: EmbeddingStore
    encoder: BatchEncoder
    decoder: DecoderBase | None

    @property
    def model_id(self) -> str:
        return self.model.model_id


def load_engine_model(model_config: ModelConfig) -> LoadedModel | TransformersFamily:
    """The configured model: a :class:`TransformersFamily` for the SAM 2.1 / HQ-SAM names (``sam_hq`` resolved,
    logged), else the ``segment_anything`` :class:`LoadedModel`.

    Raises ``WeightsUnavailableError`` when the weights are missing, ``ConfigError`` for an impossible device or
    random weights without ``allow_random_weights``.
    """
    from batchlabel.infer.families import load_transformers_family
    from batchlabel.infer.models import load_model

    family = load_transformers_family(model_config)
    return family if family is not None else load_model(model_config)


def build_engine(
    model_config: ModelConfig,
    cache_config: CacheConfig,
    *,
    model: LoadedModel | TransformersFamily | None = None,
    store: EmbeddingStore | None = None,
    batched: bool = True,
    encoder_store: bool = True,
    decoder: DecoderKind = "batch",
) -> Engine:
    """Load (or take) the model and open (or take) the store, and wire encoder and decoder.

    Args:
        model_config: ``config.model`` (name, checkpoint, device, precision, runtime, batch_size, max_wait_ms).
        cache_config: ``config.cache`` (store folder and cap, ONNX folder).
        model: an already loaded model (:func:`load_engine_model`) to reuse (``batchlabel up`` shares one between
            the backend and the watcher).
        store: an already opened store to use instead of ``cache.embeddings_dir``.
        batched: dynamic batches of ``model.batch_size`` waiting ``model.max_wait_ms`` (files in bulk); False: one
            image at a time with one loader thread (interactive and per-image callers).
        encoder_store: False when the caller looks up and fills the store itself (serve's per-image lock).
        decoder: ``batch`` (torch), ``interactive`` (:func:`select_decoder`) or ``none``.

    Raises ``WeightsUnavailableError`` (from :func:`load_engine_model`) when the weights are missing.
    """
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.families.decoder import FamilyDecoder
    from batchlabel.infer.families.hf import TransformersFamily
    from batchlabel.infer.families.runtime import FamilyRuntime
    from batchlabel.infer.store import EmbeddingStore

    if model is None:
        model = load_engine_model(model_config)
    if store is None:
        store = EmbeddingStore(cache_config.embeddings_dir, max_bytes=cache_config.max_bytes)
    family_runtime = FamilyRuntime(model) if isinstance(model, TransformersFamily) else None
    sizing: dict[str, Any] = ({"max_batch_images": model_config.batch_size, "max_wait_ms": model_config.max_wait_ms}
                              if batched else {"max_batch_images": 1, "load_workers": 1})
    encoder = BatchEncoder(model, store if encoder_store else None, runtime=model_config.runtime,
                           onnx_dir=cache_config.onnx_dir, encoder_runtime=family_runtime, **sizing)
    if isinstance(model, TransformersFamily):
        return Engine(model, store, encoder, None if decoder == "none" else FamilyDecoder(model))
    chosen: DecoderBase | None = None
    if decoder == "batch":
        chosen = MaskDecoder.from_model(model)
    elif decoder == "interactive":
        chosen = select_decoder(model, runtime=model_config.runtime, onnx_dir=cache_config.onnx_dir)
    return Engine(model, store, encoder, chosen)
