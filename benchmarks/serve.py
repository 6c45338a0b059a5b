"""Benchmark ``batchlabel serve`` the way Label Studio drives it: interactive ``POST /predict`` over HTTP.

Starts the real ``batchlabel serve`` in a subprocess (its own CPU threads, like production), then:
- store miss: the first click on a new image (encode + store + decode), and the first click after a restart (embedding
  read from the on-disk store);
- cached clicks: p50/p99 latency of point prompts (random-weight MobileSAM, 1024 input) and box prompts (LiteMedSAM
  real weights, 256 input) with 1 and 8 concurrent clients, prompts varied per request.

Prints one JSON object on stdout. Usage:
``.venv/bin/python benchmarks/serve.py [--requests 200] [--sizes 451x300,1920x1080] [--kinds point,box]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from PIL import Image

LABEL = "cat"
MODELS = {
    "point": {"name": "mobile_sam", "checkpoint": "random", "allow_random_weights": True, "device": "cpu"},
    "box": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _image(width: int, height: int) -> np.ndarray:
    from skimage import data

    cat = Image.fromarray(data.chelsea())
    return np.asarray(cat.resize((width, height), Image.Resampling.BILINEAR))


def _write_config(work: Path, model: dict[str, Any], port: int) -> Path:
    config = {
        "storage": {"root": str(work / "root")},
        "label_studio": {"url": None, "labels": [LABEL, "person"]},
        "model": model,
        "preannotate": {"mode": "none", "default_label": LABEL, "outputs": ["brush"]},
        "cache": {"dir": str(work / "cache"), "max_gb": 2},
        "serve": {"host": "127.0.0.1", "port": port},
    }
    path = work / f"serve-{model['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Server:
    """``batchlabel serve`` in a subprocess."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "batchlabel", "-q", "serve", str(config)], stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"batchlabel serve exited with {self.process.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"batchlabel serve did not answer /health in 120 s; see {log}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


def _context(kind: str, rng: random.Random, size: tuple[int, int]) -> list[dict[str, Any]]:
    """A smart-tool context like the Label Studio UI sends: a click (plus a negative one half the time) or a box."""
    h, w = size
    common = {"original_width": w, "original_height": h, "image_rotation": 0, "origin": "manual", "to_name": "image"}
    if kind == "point":
        items = [{**common, "type": "keypointlabels", "from_name": "keypoint", "is_positive": True,
                  "value": {"x": rng.uniform(20, 80), "y": rng.uniform(20, 80), "width": 0.5,
                            "keypointlabels": [LABEL]}}]
        if rng.random() < 0.5:
            items.append({**items[0], "is_positive": False,
                          "value": {**items[0]["value"], "x": rng.uniform(5, 95), "y": rng.uniform(5, 95)}})
        return items
    x, y = rng.uniform(0, 30), rng.uniform(0, 30)
    return [{**common, "type": "rectanglelabels", "from_name": "rect",
             "value": {"x": x, "y": y, "width": rng.uniform(30, 100 - x), "height": rng.uniform(30, 100 - y),
                       "rotation": 0, "rectanglelabels": [LABEL]}}]


def _body(image: str, context: list[dict[str, Any]]) -> dict[str, Any]:
    from batchlabel.sync.label_config import generate_label_config

    return {
        "tasks": [{"id": 1, "data": {"image": f"/data/local-files/?d={image}"}, "annotations": [], "predictions": []}],
        "project": "1.1700000000",
        "label_config": generate_label_config([LABEL, "person"]),
        "params": {"login": None, "password": None, "context": {"result": context}},
    }


def _one(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, bool, int]:
    """One click: ``(latency ms, answered with a prediction, response bytes)``."""
    start = time.perf_counter()
    size = 0
    try:
        response = client.post(f"{url}/predict", json=body, timeout=100)
        ok = response.status_code == 200 and bool(response.json()["results"])
        size = len(response.content)
    except httpx.HTTPError:
        ok = False
    return (time.perf_counter() - start) * 1000.0, ok, size


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(
    url: str, pid: int, kind: str, image: str, size: tuple[int, int], *, clients: int, requests: int
) -> dict[str, Any]:
    """``requests`` clicks spread over ``clients`` concurrent clients, each with its own keep-alive connection."""
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    lock = threading.Lock()

    def worker(index: int, count: int) -> None:
        nonlocal errors
        rng = random.Random(index)
        with httpx.Client() as client:
            for _ in range(count):
                ms, ok, nbytes = _one(client, url, _body(image, _context(kind, rng, size)))
                with lock:
                    latencies.append(ms)
                    sizes.append(nbytes)
                    errors += not ok

    per_client = max(1, requests // clients)
    cpu_start = _cpu_s(pid)
    client_cpu_start = time.process_time()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i, per_client)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu = _cpu_s(pid) - cpu_start
    client_cpu = time.process_time() - client_cpu_start
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "requests": len(ordered),
        "errors": errors,
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "throughput_rps": round(len(ordered) / wall, 1),
        # random weights give noise masks: their brush RLE is far longer than a real object's
        "response_kb_p50": round(statistics.median(sizes) / 1024, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / max(1, len(ordered)), 1),
        # the clients run on the same cores: their CPU (building bodies, parsing answers) competes with the server
        "client_cpu_ms_per_request": round(1000 * client_cpu / max(1, len(ordered)), 1),
    }


def run(kind: str, work: Path, sizes: list[tuple[int, int]], requests: int) -> dict[str, Any]:
    port = _free_port()
    config = _write_config(work, MODELS[kind], port)
    names = []
    for width, height in sizes:
        name = f"{kind}-{width}x{height}.jpg"
        Image.fromarray(_image(width, height)).save(work / "root" / name, quality=92)
        names.append(name)
    log = work / f"serve-{kind}.log"
    result: dict[str, Any] = {"model": MODELS[kind]["name"], "sizes": {}}
    server = Server(config, port, log)
    try:
        with httpx.Client() as client:
            _one(client, server.url, {"tasks": [{"data": {}}]})  # first request: imports, thread pool
            for name, (width, height) in zip(names, sizes, strict=True):
                rng = random.Random(0)
                miss_ms, ok, _ = _one(client, server.url, _body(name, _context(kind, rng, (height, width))))
                result["sizes"][f"{width}x{height}"] = {"store_miss_first_click_ms": round(miss_ms, 1),
                                                         "store_miss_ok": ok}
        for name, (width, height) in zip(names, sizes, strict=True):
            entry = result["sizes"][f"{width}x{height}"]
            pid = server.process.pid
            _load(server.url, pid, kind, name, (height, width), clients=1, requests=20)  # warm-up
            for clients in (1, 8):
                entry[f"clients_{clients}"] = _load(
                    server.url, pid, kind, name, (height, width), clients=clients, requests=requests
                )
    finally:
        server.stop()
    server = Server(config, port, log)  # restart: the memory cache is empty, the on-disk store is not
    try:
        with httpx.Client() as client:
            for name, (width, height) in zip(names, sizes, strict=True):
                rng = random.Random(1)
                ms, _, _ = _one(client, server.url, _body(name, _context(kind, rng, (height, width))))
                result["sizes"][f"{width}x{height}"]["store_disk_hit_first_click_ms"] = round(ms, 1)
    finally:
        server.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="clicks per measurement")
    parser.add_argument("--sizes", default="451x300,1920x1080", help="image sizes WxH, comma separated")
    parser.add_argument("--kinds", default="point,box", help="prompt kinds to measure")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    import torch
    from machine import gemm_gflops

    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "benchmark": "batchlabel serve interactive /predict over HTTP",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "gemm_gflops_at_start": gemm_gflops()},
        "requests_per_measurement": args.requests,
    }
    with tempfile.TemporaryDirectory(prefix="batchlabel-bench-serve-") as tmp:
        work = Path(tmp)
        (work / "root").mkdir()
        for kind in args.kinds.split(","):
            report[kind] = run(kind, work, sizes, args.requests)  # type: ignore[arg-type]
    report["machine"]["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    report["machine"]["gemm_gflops_at_end"] = gemm_gflops()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
