"""ONNX export of a model's image encoder and prompt decoder, and the ONNX Runtime encoder used on the CPU.

Files (named by model id, so weights and files never mix)::

    <out_dir>/<model_id>.encoder.onnx   input  "image"  (1, 3, S, S) float32, normalised and padded (preprocess.py)
                                        output "image_embeddings" (1, 256, 64, 64) float32
    <out_dir>/prompt-decoder-<model_id>-v<N>-opset17.onnx
                                        the prompt-dependent decoder graph ``batchlabel serve`` loads
                                        (:func:`batchlabel.infer.onnx_decoder.export_prompt_decoder`)

The encoder is exported at a fixed batch size of 1 (TinyViT reshapes with a traced batch size); the ONNX Runtime
encoder runs a batch image by image. Export uses TorchScript tracing (``dynamo=False``), opset 17.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from batchlabel.infer.preprocess import normalise_canvas

if TYPE_CHECKING:
    from batchlabel.infer.model_registry import ModelSpec
    from batchlabel.infer.models import LoadedModel

log = logging.getLogger(__name__)

OPSET = 17


@dataclass(frozen=True)
class OnnxFiles:
    """Where a model's exported files are (or would be)."""

    encoder: Path
    decoder: Path


def onnx_paths(model_id: str, out_dir: str | os.PathLike[str]) -> OnnxFiles:
    """The file names :func:`export_onnx` writes for ``model_id`` in ``out_dir``."""
    out = Path(out_dir)
    from batchlabel.infer.onnx_decoder import prompt_onnx_path_for

    return OnnxFiles(encoder=out / f"{model_id}.encoder.onnx", decoder=prompt_onnx_path_for(model_id, out))


def _replace_atomically(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)


def export_onnx(model: LoadedModel, out_dir: str | os.PathLike[str], *, decoder: bool = True) -> OnnxFiles:
    """Export ``model``'s image encoder (and the prompt-side decoder serve loads) to ``out_dir``; returns the paths.

    Files are written to a temp name and renamed, so a reader never sees half a file.
    """
    import torch

    paths = onnx_paths(model.model_id, out_dir)
    paths.encoder.parent.mkdir(parents=True, exist_ok=True)
    sam = model.sam.to("cpu").eval()
    size = model.spec.input_size

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image_encoder = sam.image_encoder

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.image_encoder(image)  # type: ignore[no-any-return]

    tmp = paths.encoder.with_name(f".{paths.encoder.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _Encoder().eval(), (torch.zeros(1, 3, size, size),), str(tmp), input_names=["image"],
            output_names=["image_embeddings"], opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    _replace_atomically(tmp, paths.encoder)
    log.info("exported %s", paths.encoder)

    if decoder:
        from batchlabel.infer.onnx_decoder import export_prompt_decoder

        export_prompt_decoder(sam, paths.decoder)
    sam.to(model.device)
    return paths


class OrtEncoder:
    """The exported image encoder in ONNX Runtime (CPU), as an encoder runtime of :class:`BatchEncoder`.

    Args:
        path: a ``<model_id>.encoder.onnx`` file.
        spec: the model's spec (input size and normalisation).
        threads: intra-op threads (default: ONNX Runtime's choice, one per core).
    """

    name = "onnx"
    precision = "fp32"

    def __init__(self, path: str | os.PathLike[str], spec: ModelSpec, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.spec = spec
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def encode(self, canvases: np.ndarray, input_sizes: list[tuple[int, int]]) -> np.ndarray:
        """``(B, 3, S, S)`` uint8 canvases -> ``(B, 256, 64, 64)`` float32 features (one run per image)."""
        import torch

        x = normalise_canvas(torch.from_numpy(canvases), input_sizes, self.spec).numpy()
        outputs = [self.session.run(None, {self.input_name: x[i : i + 1]})[0] for i in range(len(input_sizes))]
        return np.concatenate(outputs).astype(np.float32, copy=False)
