"""Mask codec timings: Label Studio brush RLE (batchlabel vs label_studio_sdk), polygons, COCO RLE.

Prints one JSON object: for each image size, the median milliseconds per call of each encode/decode over a
SAM-like object mask (an elliptical part with a hole plus a smaller second part, about 15% of the image).

    .venv/bin/python benchmarks/codecs.py [--repeats 7] [--sdk-repeats 3] [--sizes 640x480,1920x1080,4000x3000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def object_mask(height: int, width: int) -> np.ndarray:
    """(H, W) bool: an ellipse with an elliptical hole, plus a smaller disc, at image-relative positions."""
    rows, columns = np.ogrid[:height, :width]
    y, x = rows / height, columns / width
    outer = ((y - 0.45) / 0.3) ** 2 + ((x - 0.4) / 0.25) ** 2 < 1
    hole = ((y - 0.45) / 0.08) ** 2 + ((x - 0.42) / 0.06) ** 2 < 1
    second = ((y - 0.8) / 0.1) ** 2 + ((x - 0.8) / 0.075) ** 2 < 1
    return (outer & ~hole) | second


def median_ms(function: Callable[[], Any], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def bench_size(height: int, width: int, repeats: int, sdk_repeats: int) -> dict[str, Any]:
    from label_studio_sdk.converter.brush import decode_rle, mask2rle

    from batchlabel.formats.brush import brush_rle_to_mask, mask_to_brush_rle
    from batchlabel.formats.coco_rle import coco_rle_to_mask, mask_to_coco_rle
    from batchlabel.formats.polygon import mask_to_polygons, polygons_to_mask

    mask = object_mask(height, width)
    rle = mask_to_brush_rle(mask)
    if rle != mask2rle(mask.astype(np.uint8) * 255):
        raise RuntimeError(f"brush RLE differs from the SDK's at {width}x{height}")
    polygons = mask_to_polygons(mask, tolerance_px=1.5)
    coco = mask_to_coco_rle(mask)
    return {
        "mask_fraction": round(float(mask.mean()), 4),
        "brush_rle_bytes": len(rle),
        "brush_encode_ms": median_ms(lambda: mask_to_brush_rle(mask), repeats),
        "sdk_brush_encode_ms": median_ms(lambda: mask2rle(mask.astype(np.uint8) * 255), sdk_repeats),
        "brush_decode_ms": median_ms(lambda: brush_rle_to_mask(rle, height, width), repeats),
        "sdk_brush_decode_ms": median_ms(
            lambda: decode_rle(rle).reshape(height, width, 4)[:, :, 3] > 0, sdk_repeats
        ),
        "polygon_vertices_tol1.5": int(sum(len(p) for p in polygons)),
        "polygon_encode_tol1.5_ms": median_ms(lambda: mask_to_polygons(mask, tolerance_px=1.5), repeats),
        "polygon_decode_ms": median_ms(lambda: polygons_to_mask(polygons, height, width), repeats),
        "coco_rle_encode_ms": median_ms(lambda: mask_to_coco_rle(mask), repeats),
        "coco_rle_decode_ms": median_ms(lambda: coco_rle_to_mask(coco), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sdk-repeats", type=int, default=3)
    parser.add_argument("--sizes", default="640x480,1920x1080,4000x3000", help="WIDTHxHEIGHT, comma-separated")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sizes": {},
    }
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.lower().split("x"))
        results["sizes"][f"{width}x{height}"] = bench_size(height, width, args.repeats, args.sdk_repeats)
    print(json.dumps(results, indent=2))  # the script's own report


if __name__ == "__main__":
    main()
