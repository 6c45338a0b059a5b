"""The prompt decoder on ONNX Runtime (CPU): same API and same masks as :class:`batchlabel.infer.decoder.MaskDecoder`.

:class:`CachedOnnxMaskDecoder` computes the image side of SAM's two-way transformer in torch (once per image,
LRU-cached) and runs only the prompt-dependent graph (:func:`export_prompt_decoder`, opset 17, TorchScript exporter)
on ONNX Runtime. Batch and point count are dynamic axes, so the point grid of segment-everything decodes in batches.
That graph is what ``batchlabel export-onnx`` writes and what ``batchlabel serve`` loads: one file per model id,
``prompt-decoder-<model id>-v<version>-opset17.onnx`` (:func:`prompt_onnx_path_for`), written atomically.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from batchlabel.infer.decoder import PROMPT_KINDS, DecoderBase, LowRes
from batchlabel.infer.embedding import ImageEmbedding

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

logger = logging.getLogger(__name__)

OPSET = 17
OUTPUT_NAMES = ("iou_predictions", "low_res_masks")
#: ONNX Runtime threads per decode; the 2-core CPUs this runs on gain nothing from more.
DEFAULT_INTRA_OP_THREADS = 2


PROMPT_INPUT_NAMES = ("keys", "pe", "t2i_k", "t2i_v", "i2t_q", "point_coords", "point_labels")
#: 2: attention folded through the tokens, logits in token layout (``sam_mask_decoder.upscale_tokens``).
PROMPT_GRAPH_VERSION = 2


class _PromptSideModel(torch.nn.Module):
    """SAM's prompt encoder (points/box) + mask decoder with layer 1's image side given as inputs.

    The image side (``keys`` (b, 4096, C) = embedding + dense prompt embedding, ``pe`` (1, 4096, C), layer 1's
    head-separated ``t2i_k``/``t2i_v``/``i2t_q`` (b, heads, 4096, c)) is :meth:`MaskDecoder.image_side`; ``b`` is 1
    (broadcast over the prompt batch) or ``B`` (mask prompts). Same arithmetic as :meth:`MaskDecoder._predict`.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        from batchlabel.infer.decoder import MaskDecoder

        self.sam = sam
        self._impl = MaskDecoder(sam, input_size=sam.prompt_encoder.input_image_size[0], cache_images=0)

    def forward(
        self,
        keys: torch.Tensor,
        pe: torch.Tensor,
        t2i_k: torch.Tensor,
        t2i_v: torch.Tensor,
        i2t_q: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from batchlabel.infer.sam_mask_decoder import ImageSide

        prompt_encoder = self.sam.prompt_encoder
        sparse = prompt_encoder.pe_layer.forward_with_coords(point_coords + 0.5, prompt_encoder.input_image_size)
        labels = point_labels.unsqueeze(-1)
        padding = (labels == -1).to(sparse.dtype)
        sparse = sparse * (1.0 - padding) + prompt_encoder.not_a_point_embed.weight * padding
        for label in range(prompt_encoder.num_point_embeddings):
            sparse = sparse + prompt_encoder.point_embeddings[label].weight * (labels == label).to(sparse.dtype)
        side = ImageSide(keys=keys, pe=pe, t2i_k=t2i_k, t2i_v=t2i_v, i2t_q=i2t_q)
        logits, scores = self._impl._predict(side, sparse)
        return scores, logits


def prompt_onnx_path_for(model_id: str, cache_dir: Path) -> Path:
    """``<cache_dir>/prompt-decoder-<model id>-v<version>-opset17.onnx``."""
    safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
    return Path(cache_dir) / f"prompt-decoder-{safe}-v{PROMPT_GRAPH_VERSION}-opset{OPSET}.onnx"


def export_prompt_decoder(sam: Sam, path: Path) -> Path:
    """Export the prompt-dependent part of the decoder (:class:`_PromptSideModel`) to ``path``, atomically.

    Inputs: the image side (see :class:`_PromptSideModel`, f32, batch ``b`` dynamic); ``point_coords`` (B, N, 2) f32
    in the model frame (box corners last, no ``+0.5``); ``point_labels`` (B, N) f32 (1/0 points, 2/3 box corners,
    -1 padding). Outputs: ``iou_predictions`` (B, 4), ``low_res_masks`` (B, 65536, 4) in token layout (see
    :func:`batchlabel.infer.sam_mask_decoder.upscale_tokens`; the decoder interleaves only the masks it keeps).
    """
    from batchlabel.infer.decoder import MaskDecoder

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sam = sam.cpu() if next(sam.parameters()).device.type != "cpu" else sam
    model = _PromptSideModel(sam).eval()
    side_maker = MaskDecoder(sam, input_size=sam.prompt_encoder.input_image_size[0], cache_images=0)
    grid = sam.prompt_encoder.image_embedding_size
    with torch.inference_mode(False), torch.no_grad():
        side = side_maker._image_side(torch.randn(1, sam.prompt_encoder.embed_dim, *grid))
        args = (
            side.keys, side.pe, side.t2i_k, side.t2i_v, side.i2t_q,
            torch.randint(0, 1024, (2, 3, 2), dtype=torch.float),
            torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
        )
        side_axes = {0: "side_batch"}
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            torch.onnx.export(
                model,
                args,
                str(tmp),
                export_params=True,
                opset_version=OPSET,
                do_constant_folding=True,
                input_names=list(PROMPT_INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    "keys": side_axes, "t2i_k": side_axes, "t2i_v": side_axes, "i2t_q": side_axes,
                    "point_coords": {0: "batch", 1: "num_points"},
                    "point_labels": {0: "batch", 1: "num_points"},
                },
                dynamo=False,
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    logger.info("exported the prompt-side decoder to %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


class CachedOnnxMaskDecoder(DecoderBase):
    """The decoder with the image side from torch (once per image, LRU-cached) and the rest on ONNX Runtime.

    Per click only the prompt-dependent graph runs (:func:`export_prompt_decoder`); the image embedding + dense
    positional encoding and layer 1's image-side projections come from :meth:`MaskDecoder.image_side`. Mask-only
    prompts (no points, no box) go to the torch decoder. Masks match :class:`MaskDecoder` (same arithmetic).

    Args:
        sam: the model (its prompt encoder and mask decoder compute the image side).
        path: an ONNX file written by :func:`export_prompt_decoder`.
        input_size, prompt_kinds, model_id: as :class:`MaskDecoder`.
        intra_op_threads: ONNX Runtime threads when no :func:`batchlabel.infer.decoder.decode_threads` hint is set;
            one session per thread count is created on first use.
        cache_images: images whose image side is kept (about 12 MiB each).

    Thread-safe.
    """

    def __init__(
        self,
        sam: Sam,
        path: Path,
        *,
        input_size: int,
        prompt_kinds: Sequence[str] = PROMPT_KINDS,
        model_id: str | None = None,
        intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
        cache_images: int | None = None,
    ) -> None:
        from batchlabel.infer.decoder import DEFAULT_CACHE_IMAGES, MaskDecoder

        super().__init__(input_size=input_size, prompt_kinds=prompt_kinds, model_id=model_id)
        self.path = Path(path)
        self.intra_op_threads = intra_op_threads
        self.torch = MaskDecoder(
            sam, input_size=input_size, prompt_kinds=prompt_kinds, model_id=model_id,
            cache_images=DEFAULT_CACHE_IMAGES if cache_images is None else cache_images,
        )
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.session(intra_op_threads)  # fail early on a bad file

    @classmethod
    def from_model(
        cls, model: Any, *, cache_dir: Path, intra_op_threads: int = DEFAULT_INTRA_OP_THREADS, **kwargs: Any
    ) -> CachedOnnxMaskDecoder:
        """Export (once per model id, cached in ``cache_dir``) and load the prompt-side graph of a ``LoadedModel``."""
        path = prompt_onnx_path_for(model.model_id, cache_dir)
        if not path.is_file() or model.model_id.endswith("@random"):
            export_prompt_decoder(model.sam, path)
        return cls(
            model.sam, path, input_size=model.spec.input_size, prompt_kinds=model.spec.prompt_kinds,
            model_id=model.model_id, intra_op_threads=intra_op_threads, **kwargs,
        )

    def session(self, threads: int) -> Any:
        """The ONNX Runtime session with ``threads`` intra-op threads (created once)."""
        session = self._sessions.get(threads)
        if session is not None:
            return session
        import onnxruntime as ort

        with self._lock:
            session = self._sessions.get(threads)
            if session is None:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # no spin-waiting after a run: the spinning pool thread would steal a core from torch's mask
                # upsampling right after it (LiteMedSAM box @4000x3000: 137 -> 75 ms) and from concurrent decodes
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
                self._sessions[threads] = session
        return session

    def _low_res(
        self, embedding: ImageEmbedding, coords: np.ndarray | None, labels: np.ndarray | None, masks: np.ndarray | None
    ) -> LowRes:
        from batchlabel.infer.decoder import current_decode_threads

        if coords is None or labels is None:
            return self.torch._low_res(embedding, coords, labels, masks)
        if masks is None:
            side = self.torch.image_side(embedding)
        else:
            with torch.inference_mode():
                dense = self.torch.sam.prompt_encoder.mask_downscaling(torch.from_numpy(masks).float())
                side = self.torch._image_side(self.torch._features(embedding).float() + dense)
        feeds = {
            "keys": side.keys, "pe": side.pe, "t2i_k": side.t2i_k, "t2i_v": side.t2i_v, "i2t_q": side.i2t_q,
        }
        inputs = {name: np.ascontiguousarray(value.float().cpu().numpy()) for name, value in feeds.items()}
        inputs["point_coords"] = np.ascontiguousarray(coords, dtype=np.float32)
        inputs["point_labels"] = np.ascontiguousarray(labels, dtype=np.float32)
        threads = current_decode_threads() or self.intra_op_threads
        scores, logits = self.session(threads).run(list(OUTPUT_NAMES), inputs)
        return LowRes(torch.from_numpy(logits), torch.from_numpy(scores), layout="tokens")
