"""Encoder throughput benchmark: images/s and per-stage time (load, encode, store) per model and backend.

Prints one JSON object on stdout. Images are real photos from ``skimage.data`` written as JPEGs (``--size`` pixels on
the long side) into a temp folder; each configuration encodes them into a fresh store (so nothing is cached), after
one warm-up image. ``overhead`` = (load + store) / encode, the pipeline's cost relative to the encoder.

CPU (default): litemedsam torch fp32, litemedsam ONNX Runtime, mobile_sam (random weights) torch fp32, and with
``--vit-b`` sam_vit_b (random weights) on 2 images. CUDA (when available): the same models plus sam_vit_b/sam_vit_h
random weights in bf16 at batch 8/16/32.

    python benchmarks/encode.py [--images N] [--size PX] [--vit-b] [--gpu-images N]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks.encode")


def _write_images(folder: Path, count: int, long_side: int) -> list[Path]:
    import numpy as np
    from PIL import Image
    from skimage import data

    sources = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket(), data.camera()]
    paths = []
    for i in range(count):
        image = Image.fromarray(np.asarray(sources[i % len(sources)]))
        scale = long_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        if i >= len(sources):  # distinct bytes, so the store does not deduplicate repeats
            image = image.rotate(0.5 * i, expand=False)
        path = folder / f"img_{i:04d}.jpg"
        image.save(path, quality=92)
        paths.append(path)
    return paths


def _run(name: str, model_config: dict[str, Any], paths: list[Path], workdir: Path, **encoder_args: Any) -> dict:
    from batchlabel.config import ModelConfig
    from batchlabel.infer.encoder import BatchEncoder, EncodeStats
    from batchlabel.infer.models import load_model
    from batchlabel.infer.store import EmbeddingStore

    model = load_model(ModelConfig(**model_config))
    store_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="store-"))
    encoder = BatchEncoder(model, EmbeddingStore(store_dir, max_bytes=1 << 40), **encoder_args)
    list(encoder.encode_files(paths[:1]))  # warm-up (not counted): first-call allocations, ORT session init
    encoder.stats = EncodeStats()
    store = EmbeddingStore(Path(tempfile.mkdtemp(dir=workdir, prefix="store-")), max_bytes=1 << 40)
    encoder.store = store
    start = time.perf_counter()
    results = list(encoder.encode_files(paths))
    wall = time.perf_counter() - start
    stats = encoder.stats
    failed = [r.error for r in results if r.error]
    row = {
        "name": name,
        "model_id": model.model_id,
        "backend": encoder.runtime.name,
        "precision": encoder.runtime.precision,
        "device": str(model.device),
        "max_batch_images": encoder.max_batch_images,
        "images": len(paths),
        "failed": len(failed),
        "wall_s": round(wall, 3),
        "images_per_s": round(len(paths) / wall, 3),
        "stage_s_per_image": {
            "load": round(stats.load_s / len(paths), 4),
            "encode": round(stats.encode_s / len(paths), 4),
            "store": round(stats.store_s / len(paths), 4),
        },
        "overhead_load_store_over_encode": round((stats.load_s + stats.store_s) / stats.encode_s, 4)
        if stats.encode_s
        else None,
        "mean_batch": round(sum(stats.batch_sizes) / len(stats.batch_sizes), 2) if stats.batch_sizes else None,
    }
    log.info("%s", row)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="images per CPU configuration")
    parser.add_argument("--size", type=int, default=1024, help="long side of the generated JPEGs in pixels")
    parser.add_argument("--vit-b", action="store_true", help="also sam_vit_b random weights on 2 images (CPU: slow)")
    parser.add_argument("--gpu-images", type=int, default=256, help="images per CUDA configuration")
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA configurations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    import torch

    from batchlabel.infer.models import load_model
    from batchlabel.infer.onnx_export import export_onnx

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="batchlabel-bench-") as tmp:
        workdir = Path(tmp)
        images_dir = workdir / "images"
        images_dir.mkdir()
        cpu = {"device": "cpu"}
        random = {"checkpoint": "random", "allow_random_weights": True}
        if not args.skip_cpu:
            paths = _write_images(images_dir, args.images, args.size)
            rows.append(_run("litemedsam torch fp32", {"name": "litemedsam", **cpu}, paths, workdir, runtime="torch"))
            from batchlabel.config import ModelConfig

            onnx_dir = workdir / "onnx"
            export_onnx(load_model(ModelConfig(name="litemedsam", **cpu)), onnx_dir, decoder=False)
            rows.append(_run("litemedsam onnxruntime fp32", {"name": "litemedsam", **cpu}, paths, workdir,
                             runtime="onnx", onnx_dir=onnx_dir))
            rows.append(_run("mobile_sam torch fp32 (random weights)", {"name": "mobile_sam", **cpu, **random},
                             paths, workdir, runtime="torch"))
            if args.vit_b:
                rows.append(_run("sam_vit_b torch fp32 (random weights)", {"name": "sam_vit_b", **cpu, **random},
                                 paths[:2], workdir, runtime="torch"))
        if torch.cuda.is_available():
            gpu_dir = workdir / "gpu-images"
            gpu_dir.mkdir()
            gpu_paths = _write_images(gpu_dir, args.gpu_images, args.size)
            cuda = {"device": "cuda", "precision": "bf16"}
            models = [("litemedsam", {}), ("mobile_sam", random), ("sam_vit_b", random), ("sam_vit_h", random)]
            for name, extra in models:
                for batch in (8, 16, 32):
                    label = f"{name} cuda bf16 batch {batch}"
                    try:
                        rows.append(_run(label, {"name": name, **cuda, **extra}, gpu_paths, workdir, runtime="torch",
                                         max_batch_images=batch, load_workers=8, queue_depth=4 * batch))
                    except Exception as exc:  # one configuration's failure must not lose the other rows
                        log.exception("%s failed", label)
                        rows.append({"name": label, "error": f"{type(exc).__name__}: {exc}"})
    report = {
        "benchmark": "encode",
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "cpu_threads": torch.get_num_threads(),
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "image_long_side_px": args.size,
        "results": rows,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
