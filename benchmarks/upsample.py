"""Low-res logits -> full-size bool masks: ``batchlabel.infer.upsample.upsample_masks`` vs SAM's own resize.

Prints one JSON object: for each low-res mask kind and original image size, the median milliseconds of
- ``upsample_masks`` as used per click (one small matrix product per run of output rows on large images),
- the same with the vertical pass forced to gather tap rows per output row (what the code did before runs),
- ``Sam.postprocess_masks``-style ``F.interpolate`` twice + threshold (what SamPredictor does),
and how many pixels differ from SAM's result. Kinds: ``object`` (``codecs.object_mask``, an ellipse with a hole plus a
disc, about 15 % of the image, smoothed like real SAM logits), ``blobs`` (many small smooth blobs) and ``noise``
(random-weight decoders). Usage::

    .venv/bin/python benchmarks/upsample.py [--repeats 9] [--sizes 640x480,1920x1080,4000x3000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def low_res_logits(kind: str) -> torch.Tensor:
    """``(1, 256, 256)`` float32 logits of one mask kind (seeded)."""
    generator = torch.Generator().manual_seed(0)
    if kind == "noise":
        return torch.randn((1, 256, 256), generator=generator)
    if kind == "blobs":
        noise = torch.randn((1, 1, 256, 256), generator=generator)
        return torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)[:, 0] * 9 - 1.0
    signed = torch.from_numpy(_codecs_benchmark().object_mask(256, 256).astype(np.float32) * 2 - 1)[None, None]
    jitter = torch.randn((1, 256, 256), generator=generator) * 0.01  # no exact ties at 0 between +-1 plateaus
    return torch.nn.functional.avg_pool2d(signed, 5, stride=1, padding=2)[:, 0] * 8 + jitter


def _codecs_benchmark() -> Any:
    """``benchmarks/codecs.py`` as a module (its name is taken by the standard library's ``codecs``)."""
    spec = importlib.util.spec_from_file_location("codecs_benchmark", Path(__file__).with_name("codecs.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_ms(function: Callable[[], Any], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def sam_postprocess(logits: torch.Tensor, input_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``Sam.postprocess_masks(...) > 0`` for 1024-px SAM: resize to 1024, crop ``input_size``, resize to ``size``."""
    upscaled = torch.nn.functional.interpolate(logits[:, None], (1024, 1024), mode="bilinear", align_corners=False)
    upscaled = upscaled[..., : input_size[0], : input_size[1]]
    return (torch.nn.functional.interpolate(upscaled, size, mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def bench_mask(logits: torch.Tensor, size: tuple[int, int], repeats: int) -> dict[str, Any]:
    """Timings of one low-res mask upsampled to ``size`` ``(H, W)`` for a 1024-px SAM."""
    from batchlabel.infer import upsample

    scale = 1024 / max(size)
    input_size = (int(size[0] * scale + 0.5), int(size[1] * scale + 0.5))

    def ours() -> np.ndarray:
        return upsample.upsample_masks(logits, original_size=size, input_size=input_size, padded_size=1024)

    masks = ours()
    entry: dict[str, Any] = {
        "mask_fraction": round(float(masks.mean()), 4),
        "pixels_differing_from_sam": int(np.logical_xor(masks, sam_postprocess(logits, input_size, size)).sum()),
        "upsample_ms": median_ms(ours, repeats),
    }
    min_run_rows = upsample._MIN_RUN_ROWS
    upsample._MIN_RUN_ROWS = 1 << 30
    try:
        entry["row_gather_only_ms"] = median_ms(ours, repeats)
    finally:
        upsample._MIN_RUN_ROWS = min_run_rows
    entry["sam_postprocess_ms"] = median_ms(lambda: sam_postprocess(logits, input_size, size), repeats)
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sizes", default="640x480,1920x1080,4000x3000", help="WIDTHxHEIGHT, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from machine import gemm_gflops

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "gemm_gflops_at_start": gemm_gflops(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "masks": {},
    }
    for kind in ("object", "blobs", "noise"):
        logits = low_res_logits(kind)
        for size_text in args.sizes.split(","):
            width, height = (int(part) for part in size_text.split("x"))
            results["masks"][f"{kind}@{size_text}"] = bench_mask(logits, (height, width), args.repeats)
    results["machine"]["gemm_gflops_at_end"] = gemm_gflops()
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
