"""Ingestion throughput and latency against a real (embedded) Label Studio.

Prints one JSON object:
- ``discovery``: files/s for scan + stability check + sha256 of N small files (``--files``);
- ``push``: tasks with predictions per second created in bulk (``--tasks`` tasks, each with a brush mask and a
  rectangle of a 640x480 SAM-like object, through :class:`batchlabel.ingest.sink.LabelStudioSink`, chunks of 500),
  and predictions per second added to existing tasks;
- ``latency``: seconds from a file becoming stable to its prediction being visible in Label Studio, through the
  real pipeline (LiteMedSAM, boxes mode with a sidecar), next to the encoder's own seconds for that image.

    .venv/bin/python benchmarks/ingest.py [--files 2000] [--tasks 1000] [--latency-images 3]

Starts a private Label Studio from the test template data dir (``batchlabel.sync.server``) in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def object_mask(height: int, width: int) -> np.ndarray:
    """(H, W) bool: a SAM-like object (an ellipse with a hole plus a smaller disc), about 15% of the image."""
    rows, columns = np.ogrid[:height, :width]
    y, x = rows / height, columns / width
    outer = ((y - 0.45) / 0.3) ** 2 + ((x - 0.4) / 0.25) ** 2 < 1
    hole = ((y - 0.45) / 0.08) ** 2 + ((x - 0.42) / 0.06) ** 2 < 1
    second = ((y - 0.8) / 0.1) ** 2 + ((x - 0.8) / 0.075) ** 2 < 1
    return (outer & ~hole) | second


def bench_discovery(folder: Path, count: int) -> dict[str, Any]:
    from batchlabel.infer.images import file_sha256
    from batchlabel.ingest.discovery import PathFilter, StabilityTracker, scan

    rng = np.random.default_rng(0)
    for index in range(count):
        path = folder / f"d{index % 20}" / f"img{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.bytes(50_000))
    old = time.time() - 60
    for path in folder.rglob("*.jpg"):
        os.utime(path, (old, old))
    start = time.perf_counter()
    tracker = StabilityTracker(folder, PathFilter(("**/*.jpg",)), stable_s=1.0)
    for path in scan(folder, tracker.path_filter):
        tracker.observe(path)
    stable = tracker.poll()
    scanned = time.perf_counter() - start
    hashes = [file_sha256(item.path) for item in stable]
    total = time.perf_counter() - start
    return {
        "files": len(hashes), "file_bytes": 50_000,
        "scan_and_stability_files_per_s": round(len(stable) / scanned, 1),
        "scan_stability_and_sha256_files_per_s": round(len(hashes) / total, 1),
    }


def _config(root: Path, cache: Path, url: str, api_key: str, title: str, mode: str) -> Any:
    from batchlabel.config import parse_config

    raw = {
        "storage": {"root": str(root), "stable_s": 0.2},
        "label_studio": {"url": url, "api_key": api_key, "project": title, "labels": ["cat", "person"]},
        "model": {"name": "litemedsam", "device": "cpu", "batch_size": 4, "max_wait_ms": 20},
        "preannotate": {"mode": mode, "boxes_from": ["sidecar"], "outputs": ["brush", "rectangle"]},
        "cache": {"dir": str(cache), "max_gb": 1},
    }
    return parse_config(raw, source="benchmarks/ingest.py", base_dir=root)


def process_tree_cpu_s(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its descendants (Linux /proc), so a shared machine's contention can be
    told apart from the server's own cost."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(child) for child in children)
        except (OSError, IndexError, ValueError):
            continue
    return total


def bench_push(ls: Any, root: Path, cache: Path, url: str, api_key: str, count: int,
               server_pid: int | None = None) -> dict[str, Any]:
    from batchlabel.ingest.sink import LabelStudioSink, PushItem
    from batchlabel.sync.label_config import ControlNames
    from batchlabel.sync.results import object_results

    (root / "sub").mkdir(parents=True, exist_ok=True)
    config = _config(root, cache, url, api_key, "bench-push", "boxes")
    version = "batchlabel bench"
    mask = object_mask(480, 640)
    result = object_results(mask, label="cat", outputs=("brush", "rectangle"), names=ControlNames(), score=0.93)
    prediction = {"result": result, "score": 0.93, "model_version": version}
    sink = LabelStudioSink(ls, config, version)
    sink.open()
    items = [PushItem(f"sub/img{i:05d}.jpg", f"{i:064x}", prediction) for i in range(count)]
    payload_mb = len(json.dumps([{"data": {}, "predictions": [prediction]}])) * count / 1e6
    server_cpu = process_tree_cpu_s(server_pid) if server_pid else 0.0
    client_cpu = time.process_time()
    start = time.perf_counter()
    ids = sink.push(items)
    created_s = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    server_cpu = (process_tree_cpu_s(server_pid) - server_cpu) if server_pid else None
    again = [PushItem(item.rel_path, item.sha256, prediction, task_id=ids[item.rel_path]) for item in items]
    start = time.perf_counter()
    sink.push(again)
    predictions_s = time.perf_counter() - start
    return {
        "tasks": count, "payload_mb": round(payload_mb, 1), "chunk_size": sink.chunk_size,
        "tasks_with_predictions_per_s": round(count / created_s, 1),
        "client_cpu_s": round(client_cpu, 2),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 2),
        "tasks_with_predictions_per_server_cpu_s": None if not server_cpu else round(count / server_cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "predictions_for_existing_tasks_per_s": round(count / predictions_s, 1),
    }


def bench_latency(ls: Any, root: Path, cache: Path, url: str, api_key: str, count: int) -> dict[str, Any]:
    from PIL import Image
    from skimage import data

    from batchlabel.annotate.preannotate import model_version_for
    from batchlabel.infer.decoder import MaskDecoder
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.models import load_model
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.ingest.discovery import PathFilter, StabilityTracker
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.pipeline import Pipeline
    from batchlabel.ingest.sink import LabelStudioSink
    from batchlabel.sync.client import get_task

    (root / "live").mkdir(parents=True, exist_ok=True)
    config = _config(root, cache, url, api_key, "bench-latency", "boxes")
    model = load_model(config.model)
    encoder = BatchEncoder(model, EmbeddingStore(config.embeddings_dir, max_bytes=10**9), max_batch_images=4,
                           max_wait_ms=20)
    version = model_version_for(config, model.model_id)
    sink = LabelStudioSink(ls, config, version)
    sink.open()
    journal = Journal(config.journal_path)
    pipeline = Pipeline(config, journal, sink, encoder, MaskDecoder.from_model(model), model_version=version,
                        push_max_wait_s=0.05)
    tracker = StabilityTracker(root, PathFilter(config.storage.include), stable_s=0.0)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    latencies, encoder_s = [], []
    for index in range(count):
        path = root / "live" / f"img{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(path.name + ".json").write_text(json.dumps([{"label": "cat", "xyxy": [20, 20, 200, 200]}]))
        Image.fromarray(sources[index % len(sources)][::2, ::2].copy()).save(path)
        tracker.observe(path, atomic=True)
        [stable] = tracker.poll()
        start = time.perf_counter()
        pipeline.submit(stable)
        while journal.get(stable.rel_path) is None or journal.get(stable.rel_path).stage != "pushed":
            time.sleep(0.005)
        task_id = journal.get(stable.rel_path).task_id
        while not get_task(ls, task_id).get("predictions"):
            time.sleep(0.01)
        latencies.append(time.perf_counter() - start)
        copy = root / "live" / f"fresh{index}.png"  # same pixels, new bytes: encoder time without the store
        Image.fromarray(sources[index % len(sources)][::2, ::2].copy()).save(copy, compress_level=1)
        timer = time.perf_counter()
        list(BatchEncoder(model, None, max_batch_images=1, max_wait_ms=0).encode_files([copy]))
        encoder_s.append(time.perf_counter() - timer)
    pipeline.close()
    journal.close()
    return {
        "images": count,
        "stable_to_visible_prediction_s": [round(v, 2) for v in latencies],
        "encoder_s": [round(v, 2) for v in encoder_s],
        "median_overhead_beyond_encoder_s": round(statistics.median(
            lat - enc for lat, enc in zip(latencies, encoder_s, strict=True)), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--latency-images", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    from batchlabel.sync.client import connect
    from batchlabel.sync.server import TEMPLATE_CREDENTIALS, EmbeddedLabelStudio, ensure_template

    work = Path(tempfile.mkdtemp(prefix="batchlabel-bench-ingest-"))
    report: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} CPU",
                              "python": platform.python_version()}
    try:
        report["discovery"] = bench_discovery(work / "scan", args.files)
        server = EmbeddedLabelStudio(data_dir=work / "ls-data", document_root=work / "root",
                                     credentials=TEMPLATE_CREDENTIALS, template_dir=ensure_template())
        with server:
            from batchlabel.config import LabelStudioConfig

            ls = connect(LabelStudioConfig(url=server.url, api_key=TEMPLATE_CREDENTIALS.api_key, labels=("cat",)))
            report["push"] = bench_push(ls, work / "root" / "push", work / "cache-push", server.url,
                                        TEMPLATE_CREDENTIALS.api_key, args.tasks,
                                        server_pid=server._process.pid if server._process else None)
            report["latency"] = bench_latency(ls, work / "root" / "latency", work / "cache-latency", server.url,
                                              TEMPLATE_CREDENTIALS.api_key, args.latency_images)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
