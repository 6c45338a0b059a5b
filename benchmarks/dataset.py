"""build-dataset at scale: a synthetic Label Studio JSON export of N images x M brush masks -> COCO RLE dataset.

Writes N small distinct PNG files and an export whose tasks each carry M brush masks (Label Studio RLE, each a
SAM-like blob of ~2% of the image, with a hole in every other one), then times ``build_dataset`` on it and prints
one JSON object: setup and build seconds (wall and CPU: the build is one process, so on a shared machine CPU seconds
are the stable number), images and masks per second, export and output sizes, peak RSS.

    .venv/bin/python benchmarks/dataset.py [--images 10000] [--masks 10] [--size 640x480] [--keep DIR]
        [--format coco --format coco-polygon --format yolo --format voc | --all-formats]

``--all-formats`` builds the same export twice, COCO only and then all four formats, and prints both runs and their
ratio (the issue-22 target: all four in at most 2x the COCO-only time, memory bounded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def blob_masks(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` (H, W) bool masks: ellipses at random places, every other one with a hole."""
    rng = np.random.default_rng(seed)
    rows, columns = np.ogrid[:height, :width]
    masks = []
    for index in range(count):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.06, 0.12) * height, rng.uniform(0.06, 0.12) * width
        mask = ((rows - cy) / ry) ** 2 + ((columns - cx) / rx) ** 2 < 1
        if index % 2:
            mask &= ((rows - cy) / (ry / 3)) ** 2 + ((columns - cx) / (rx / 3)) ** 2 >= 1
        masks.append(mask)
    return masks


def write_project(root: Path, export: Path, *, images: int, masks: int, height: int, width: int,
                  labels: list[str]) -> dict[str, Any]:
    """Image files under ``root/bench`` and the export file; returns sizes."""
    import io

    from PIL import Image

    from batchlabel.sync.client import image_url
    from batchlabel.sync.results import brush_result

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 127, np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    items = [brush_result(mask, label=labels[k % len(labels)], from_name="brush", to_name="image")
             for k, mask in enumerate(blob_masks(masks, height, width))]
    folder = root / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    with export.open("w") as handle:
        handle.write("[")
        for index in range(images):
            rel = f"bench/{index // 1000:03d}/{index:06d}.png"
            path = root / rel
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(png + index.to_bytes(4, "big"))  # distinct bytes after IEND; still a valid PNG
            result = [{**item, "id": f"o{index}x{k}"} for k, item in enumerate(items)]
            task = {"id": index + 1, "data": {"image": image_url(rel)}, "predictions": [],
                    "annotations": [{"id": index + 1, "result": result, "was_cancelled": False,
                                     "ground_truth": False, "created_at": "2026-11-25T10:00:00Z",
                                     "updated_at": "2026-11-25T10:00:00Z", "completed_by": 1}]}
            handle.write(("," if index else "") + json.dumps(task, separators=(",", ":")))
        handle.write("]")
    return {"export_mb": round(export.stat().st_size / 1e6, 1), "image_bytes": len(png) + 4}


def _cpu_s() -> float:
    """User + system CPU seconds of this process and of its children that have finished."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--masks", type=int, default=10, help="masks per image")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--segmentation", choices=["rle", "polygon"], default="rle")
    parser.add_argument("--keep", metavar="DIR", help="build here and keep the files (default: a temporary folder)")
    parser.add_argument("--format", dest="formats", action="append", metavar="NAME",
                        help="a format to write (repeatable; default coco)")
    parser.add_argument("--all-formats", action="store_true",
                        help="build COCO only, then all four formats, and compare")
    parser.add_argument("--export-workers", type=int, default=None,
                        help="processes rendering the extra formats (default: the builder's choice)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from batchlabel.config import parse_config
    from batchlabel.dataset.builder import BuildOptions, build_dataset

    labels = ["cat", "person", "bottle"]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="batchlabel-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        root, export, out = base / "root", base / "export.json", base / "dataset"
        started = time.perf_counter()
        sizes = write_project(root, export, images=args.images, masks=args.masks, height=height, width=width,
                              labels=labels)
        setup_s = time.perf_counter() - started
        config = parse_config({"storage": {"root": str(root)}, "label_studio": {"labels": labels},
                               "dataset": {"out": str(out)}}, source="benchmark", base_dir=base)
        runs = [("coco",), ("coco", "coco-polygon", "yolo", "voc")] if args.all_formats else [
            tuple(dict.fromkeys(args.formats or ["coco"]))]
        results = []
        for formats in runs:
            if out.exists():
                shutil.rmtree(out)
            rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cpu_before = _cpu_s()
            started = time.perf_counter()
            report = build_dataset(config, BuildOptions(out=out, from_export=export, segmentation=args.segmentation,
                                                        formats=formats, export_workers=args.export_workers))
            build_s = time.perf_counter() - started
            build_cpu_s = _cpu_s() - cpu_before  # this process and its (finished) export workers
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            worker_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            annotations = out / "annotations"
            annotations_mb = sum(p.stat().st_size for p in annotations.iterdir()) / 1e6 if annotations.is_dir() else 0
            output_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()
                            and not p.is_relative_to(out / "images") and "images" not in p.parts[-3:-1]
                            and "JPEGImages" not in p.parts) / 1e6
            results.append({
                "benchmark": "build-dataset from a JSON export",
                "formats": list(formats),
                "images": args.images,
                "masks_per_image": args.masks,
                "image_size": f"{width}x{height}",
                "segmentation": args.segmentation,
                "setup_s": round(setup_s, 1),
                "export_mb": sizes["export_mb"],
                "build_s": round(build_s, 1),
                "build_cpu_s": round(build_cpu_s, 1),
                "images_per_s": round(args.images / build_s, 1),
                "images_per_cpu_s": round(args.images / build_cpu_s, 1),
                "masks_per_s": round(args.images * args.masks / build_s, 1),
                "objects_written": report.counts["objects"],
                "failures": len(report.failures),
                "annotations_mb_all_train_val": round(annotations_mb, 1),
                "output_mb_without_images": round(output_mb, 1),
                "image_files": report.image_files,
                "peak_rss_mb": round(peak_rss_mb, 1),  # of the process so far (ru_maxrss never goes down)
                "export_worker_peak_rss_mb": round(worker_rss_mb, 1),  # the largest worker so far (0: none)
                "rss_before_build_mb": round(rss_before_mb, 1),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 1),
                "python": platform.python_version(),
            })
        if len(results) == 1:
            print(json.dumps(results[0], indent=1))
        else:
            coco, everything = results
            print(json.dumps({"coco_only": coco, "all_formats": everything,
                              "time_ratio": round(everything["build_s"] / coco["build_s"], 2),
                              "cpu_time_ratio": round(everything["build_cpu_s"] / coco["build_cpu_s"], 2)}, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
