"""Which prompt decoder ``batchlabel serve`` answers clicks with.

On the CPU in fp32 (``model.backend`` auto or onnx) a click runs :class:`~batchlabel.infer.onnx_decoder.
CachedOnnxMaskDecoder`: the image side from torch, cached per image, and only the prompt-dependent graph on ONNX
Runtime (LiteMedSAM box, low-res: about 25-30 ms on 2 cores against about 40 ms for the torch decoder; masks equal
the torch decoder's, tested at IoU >= 0.99 against it and ``SamPredictor``). The graph is exported once per model id
into ``<cache.dir>/onnx``. Anywhere else (``model.backend: torch``, CUDA, bf16/fp16, no onnxruntime, a failed
export) the torch :class:`~batchlabel.infer.decoder.MaskDecoder`.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from batchlabel.infer.decoder import DecoderBase, MaskDecoder

log = logging.getLogger(__name__)


def select_decoder(model: Any, *, backend: str, onnx_dir: Path) -> DecoderBase:
    """The decoder for a ``LoadedModel``: see the module docstring. ``backend`` is ``config.model.backend``."""
    usable = (
        backend in ("auto", "onnx")
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
