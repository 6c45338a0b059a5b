"""Click latency of the prompt decoder on a cached embedding, and segment-everything time per image.

Prints one JSON document: for each model (LiteMedSAM real weights; the SAM ViT-B decoder with deterministic random
weights, the same size for every SAM v1 model), backend (torch; ONNX Runtime whole graph; ``onnx_cached``: ONNX
Runtime on the torch-cached image side, what ``serve`` uses on the CPU) and original image size (640x480, 4000x3000),
the p50/p99 latency in ms of a full ``decode`` (prompt -> bool masks at the original size) for a point
and a box prompt, next to ``SamPredictor.predict`` on the same features and the torch decoder without its per-image
cache. Usage::

    .venv/bin/python benchmarks/decode.py [--repeats 30] [--threads 2] [--points-per-side 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from batchlabel.config import ModelConfig
from batchlabel.infer.decoder import DecoderBase, MaskDecoder, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.everything import segment_everything
from batchlabel.infer.model_registry import MODEL_SPECS
from batchlabel.infer.models import LoadedModel, load_model
from batchlabel.infer.onnx_decoder import CachedOnnxMaskDecoder
from batchlabel.infer.preprocess import input_size_for

log = logging.getLogger("benchmarks.decode")

SIZES = {"640x480": (480, 640), "4000x3000": (3000, 4000)}


def _latency(run: Callable[[], Any], repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
        "min_ms": round(times[0], 2),
    }


def _features(model: LoadedModel) -> torch.Tensor:
    """Real encoder output for LiteMedSAM (skimage chelsea); seeded random features for the random-weight model."""
    if model.model_id.endswith("@random"):
        return torch.randn((1, 256, 64, 64), generator=torch.Generator().manual_seed(0))
    from segment_anything import SamPredictor
    from skimage import data

    predictor = SamPredictor(model.sam)
    predictor.set_image(data.chelsea())
    return predictor.features.detach().clone()


def _prompts(size: tuple[int, int], kinds: frozenset[str]) -> dict[str, Prompt]:
    h, w = size
    prompts = {"box": Prompt(box=np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h]))}
    if "point" in kinds:
        prompts["point"] = Prompt(points=np.array([[0.45 * w, 0.5 * h]]), point_labels=np.array([1]))
    return prompts


def bench_model(model: LoadedModel, onnx_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from segment_anything import SamPredictor

    features = _features(model)
    decoders: dict[str, DecoderBase] = {
        "torch": MaskDecoder.from_model(model),
        "torch_nocache": MaskDecoder.from_model(model, cache_images=0),
        # image side from torch (cached per image), prompt-dependent graph on ONNX Runtime: what serve uses on CPU
        "onnx_cached": CachedOnnxMaskDecoder.from_model(model, cache_dir=onnx_dir, intra_op_threads=args.threads),
    }
    out: dict[str, Any] = {}
    for size_name, size in SIZES.items():
        input_size = input_size_for(size, model.spec.input_size)
        embedding = ImageEmbedding(
            features.numpy().copy().astype(np.float16), size, input_size, model.model_id, "fp32", "b" * 64
        )
        predictor = SamPredictor(model.sam)
        predictor.features = features
        predictor.original_size, predictor.input_size, predictor.is_image_set = size, input_size, True
        for prompt_name, prompt in _prompts(size, model.spec.prompt_kinds).items():
            entry: dict[str, Any] = {}
            for backend, decoder in decoders.items():
                entry[backend] = _latency(lambda d=decoder, p=prompt, e=embedding: d.decode(e, p), args.repeats)
                entry[backend]["low_res_only_p50_ms"] = _latency(
                    lambda d=decoder, p=prompt, e=embedding: d.decode_low_res(e, [p]), args.repeats
                )["p50_ms"]
            entry["sampredictor"] = _latency(
                lambda p=prompt, pr=predictor: pr.predict(
                    point_coords=p.points, point_labels=p.point_labels, box=p.box, multimask_output=False
                ),
                args.repeats,
            )
            out[f"{prompt_name}@{size_name}"] = entry
            log.info("%s %s@%s: %s", model.model_id, prompt_name, size_name, json.dumps(entry))
    if "point" in model.spec.prompt_kinds and args.points_per_side > 0:
        embedding = ImageEmbedding(features.numpy().copy(), (480, 640), (768, 1024), model.model_id, "fp32", "c" * 64)
        for backend in ("torch", "onnx_cached"):
            start = time.perf_counter()
            found = segment_everything(
                decoders[backend],
                embedding,
                points_per_side=args.points_per_side,
                pred_iou_thresh=0.0,
                stability_score_thresh=0.0,
            )
            seconds = time.perf_counter() - start
            out[f"everything_{backend}@640x480"] = {
                "points_per_side": args.points_per_side,
                "seconds_per_image": round(seconds, 2),
                "ms_per_prompt": round(seconds * 1e3 / args.points_per_side**2, 1),
                "masks": len(found),
            }
            log.info("%s everything %s: %.1f s", model.model_id, backend, seconds)
    return out


def _load(name: str) -> LoadedModel:
    """LiteMedSAM with its real weights; any other model with deterministic random weights (seed 0)."""
    if name == "litemedsam":
        return load_model(ModelConfig(name=name, device="cpu"))
    if name == "sam_vit_b":
        # built here rather than by load_model(checkpoint="random"): same weights recipe (seed 0), no weights file
        from segment_anything import sam_model_registry

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sam = sam_model_registry["vit_b"]().eval()
        return LoadedModel(MODEL_SPECS[name], sam, torch.device("cpu"), "fp32", f"{name}@random", None)
    return load_model(ModelConfig(name=name, device="cpu", checkpoint="random", allow_random_weights=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--points-per-side", type=int, default=16, help="segment-everything grid; 0 = skip")
    parser.add_argument("--models", default="litemedsam,sam_vit_b")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    from machine import gemm_gflops

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "gemm_gflops_at_start": gemm_gflops(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "models": {},
    }
    with tempfile.TemporaryDirectory() as onnx_dir:
        for name in args.models.split(","):
            model = _load(name)
            results["models"][model.model_id] = bench_model(model, Path(onnx_dir), args)
    results["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    results["machine"]["gemm_gflops_at_end"] = gemm_gflops()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
