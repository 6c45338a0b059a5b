"""Encode and decode timings for the SAM 2.1 and HQ-SAM families on the CPU, with random weights.

Per configuration: model build, encode of one 1024x768 photo (median of ``--images``), decode latency per prompt kind
(point, box, box + points, point + previous mask; median and p90 of ``--repeats``), and the store's bytes per image
(``.npy`` + ``.extras.npz`` + ``.json``). Configurations: each family's tiny test config and, with ``--default``,
``Sam2Config()`` (hiera-tiny-sized, 31 M parameters). Prints one JSON object.

    PYTHONPATH=. python benchmarks/families.py --threads 2 [--default]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch

from batchlabel.config import ModelConfig
from batchlabel.infer.decoder import Prompt
from batchlabel.infer.families import load_family
from batchlabel.infer.families.sam2 import Sam2Family
from batchlabel.infer.images import LoadedImage
from batchlabel.infer.store import EmbeddingStore

log = logging.getLogger(__name__)


def _photo() -> LoadedImage:
    from PIL import Image
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 768)))
    return LoadedImage(rgb=rgb, exif_orientation=1, sha256="cd" * 32, path="astronaut.png")


def _stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {"median_ms": round(1000 * statistics.median(ordered), 1),
            "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 1)}


def bench(family: Any, label: str, args: argparse.Namespace) -> dict[str, Any]:
    image = _photo()
    encode_s = []
    for _ in range(args.images):
        start = time.perf_counter()
        embedding = family.encode(image)
        encode_s.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as root:
        store = EmbeddingStore(root, max_bytes=1 << 30)
        store.put(embedding)
        stored_bytes = store.size_bytes()
        embedding = store.get(image.sha256, family.model_id)
    first = family.decode(embedding, Prompt(points=np.array([[500.0, 300.0]]), point_labels=np.array([1])))
    prompts = {
        "point": Prompt(points=np.array([[500.0, 300.0]]), point_labels=np.array([1])),
        "box": Prompt(box=np.array([300.0, 100.0, 700.0, 700.0])),
        "box+points": Prompt(points=np.array([[500.0, 300.0], [350.0, 150.0]]), point_labels=np.array([1, 0]),
                             box=np.array([300.0, 100.0, 700.0, 700.0])),
        "point+mask": Prompt(points=np.array([[500.0, 300.0]]), point_labels=np.array([1]),
                             mask_logits=first.low_res_logits[:1]),
    }
    decode = {}
    for kind, prompt in prompts.items():
        family.decode(embedding, prompt)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            family.decode(embedding, prompt)
            seconds.append(time.perf_counter() - start)
        decode[kind] = _stats(seconds)
    return {
        "config": label,
        "model_id": family.model_id,
        "parameters_m": round(sum(p.numel() for p in family.model.parameters()) / 1e6, 1),
        "encode": _stats(encode_s),
        "decode": decode,
        "store_bytes_per_image": stored_bytes,
        "feature_shapes": {"image_embed": list(embedding.features.shape),
                           **{k: list(v.shape) for k, v in embedding.extras.items()}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default", action="store_true", help="also Sam2Config() (31 M parameters)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    from machine import gemm_gflops

    info = {"cpus": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            "gemm_gflops_at_start": gemm_gflops()}
    rows = []
    for name in ("sam2.1_hiera_tiny", "sam_hq_vit_b"):
        family = load_family(ModelConfig(name=name, checkpoint="random", allow_random_weights=True, device="cpu"))
        rows.append(bench(family, f"{name} tiny random config", args))
    if args.default:
        from transformers import Sam2Config, Sam2Model

        tiny = load_family(ModelConfig(name="sam2.1_hiera_tiny", checkpoint="random", allow_random_weights=True,
                                       device="cpu"))
        assert isinstance(tiny, Sam2Family)
        torch.manual_seed(0)
        family = Sam2Family(tiny.spec, Sam2Model(Sam2Config()), model_id="sam2.1_hiera_tiny@default-random",
                            precision="fp32")
        rows.append(bench(family, "Sam2Config() default (hiera-tiny-sized) random", args))
    info["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    info["gemm_gflops_at_end"] = gemm_gflops()
    print(json.dumps({"machine": info, "threads": args.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
