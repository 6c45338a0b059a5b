"""Interactive clicks while a background training runs: ``batchlabel serve``'s box-click latency idle, during a
training started the way ``serve`` starts one (``BackgroundTrainer``: nice +10, one thread per math library), and
for comparison during the same training at normal priority with all threads.

The serve side is ``benchmarks/serve.py``'s (the real ``batchlabel serve`` in a subprocess, LiteMedSAM box clicks on
one cached image over a kept-alive connection). The training is ``benchmarks/train.py`` (YOLO11n fine-tuned on the
synthetic ring-with-cross images at ``--imgsz``): the same trainer ``batchlabel train`` runs, without needing a
Label Studio. Prints one JSON object. Usage::

    .venv/bin/python benchmarks/train_clicks.py [--requests 60] [--size 640x480] [--imgsz 320] [--images 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batchlabel.annotate.background_training import BackgroundTrainer, training_in_progress  # noqa: E402
from benchmarks.serve import MODELS, Server, _body, _context, _free_port, _image, _one, _write_config  # noqa: E402

#: Seconds the training runs before clicks are measured (imports, base weights, dataset scan).
WARM_UP_S = 20.0


def _clicks(url: str, image: str, size_hw: tuple[int, int], requests: int) -> dict[str, Any]:
    rng = random.Random(0)
    latencies, errors = [], 0
    with httpx.Client() as client:
        for _ in range(requests):
            ms, ok, _ = _one(client, url, _body(image, _context("box", rng, size_hw)))
            latencies.append(ms)
            errors += not ok
    ordered = sorted(latencies)
    return {"requests": len(ordered), "errors": errors, "p50_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def _during_training(server: Server, image: str, size_hw: tuple[int, int], args: argparse.Namespace, work: Path,
                     *, nice: int, single_thread: bool) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "benchmarks" / "train.py"), "--images", str(args.images),
               "--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--device", "cpu"]
    models = work / f"models-nice{nice}"
    trainer = BackgroundTrainer(models, command, nice=nice)
    if not single_thread:  # the comparison: what an uncapped child would take
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS"):
            trainer.env.pop(key, None)
    trainer.request("benchmark")
    deadline = time.monotonic() + 60
    while training_in_progress(models) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(WARM_UP_S)
    try:
        result = _clicks(server.url, image, size_hw, args.requests)
        result["training_still_running"] = training_in_progress(models) is not None
    finally:
        trainer.close(grace_s=5.0)
    result.update(nice=nice, single_thread=single_thread)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=200, help="enough that the training outlasts the clicks")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bl-train-clicks-") as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        port = _free_port()
        config = _write_config(work, MODELS["box"], port)
        image = f"box-{width}x{height}.jpg"
        Image.fromarray(_image(width, height)).save(work / "root" / image, quality=92)
        server = Server(config, port, work / "serve.log")
        try:
            with httpx.Client() as client:
                _one(client, server.url, _body(image, _context("box", random.Random(1), (height, width))))  # encode
            _clicks(server.url, image, (height, width), 10)  # warm-up
            idle = _clicks(server.url, image, (height, width), args.requests)
            capped = _during_training(server, image, (height, width), args, work, nice=10, single_thread=True)
            uncapped = _during_training(server, image, (height, width), args, work, nice=0, single_thread=False)
            idle_after = _clicks(server.url, image, (height, width), args.requests)
        finally:
            server.stop()
    report = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": _cpus(),
        "size": args.size, "imgsz": args.imgsz, "model": MODELS["box"]["name"],
        "idle": idle, "training_nice10_1thread": capped, "training_nice0_all_threads": uncapped,
        "idle_after": idle_after,
        "p50_ratio_training_vs_idle": round(capped["p50_ms"] / statistics.fmean([idle["p50_ms"],
                                                                                 idle_after["p50_ms"]]), 2),
        "p50_ratio_uncapped_vs_idle": round(uncapped["p50_ms"] / statistics.fmean([idle["p50_ms"],
                                                                                   idle_after["p50_ms"]]), 2),
    }
    print(json.dumps(report, indent=2))
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
