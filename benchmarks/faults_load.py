"""Load test of ``batchlabel serve`` under hostile input: valid clicks mixed with every invalid kind of issue 12.

Starts the real ``batchlabel serve`` (LiteMedSAM real weights, box prompts) in a subprocess, then runs ``--clients``
threads for ``--duration-s`` seconds, each on **one keep-alive connection** (``http.client``), sending valid box
clicks and, as often, one of the hostile requests of :func:`hostile_requests` (huge / non-finite / wrong-type
numbers, unknown labels, too many regions, over-nested JSON, traversal, a symlink out of the root, a name that looks
encoded, malformed JSON). Every few seconds a fault thread adds a new image whose store entry it has already damaged
(random bytes, ``original_size`` 0x0 and 100000x100000, all-NaN features), and a tenth of the clicks go to it: the
server must drop the entry and encode the image again (a new image each time: the server's memory cache never hides
the damage).

Counts: answers per status, 5xx, connection resets (any exception on a kept connection; the client reconnects), and
the server's RSS sampled twice a second. Prints one JSON object. Usage:
``.venv/bin/python benchmarks/faults_load.py [--clients 8] [--duration-s 30]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from PIL import Image

LABEL = "cat"
SIZE = (300, 451)  # (height, width) of skimage's chelsea


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _box(label: str = LABEL, **value: Any) -> dict[str, Any]:
    h, w = SIZE
    item: dict[str, Any] = {
        "type": "rectanglelabels", "from_name": "rect", "to_name": "image", "origin": "manual",
        "original_width": w, "original_height": h, "image_rotation": 0,
        "value": {"x": 5.0, "y": 5.0, "width": 80.0, "height": 90.0, "rotation": 0, "rectanglelabels": [label]},
    }
    item["value"].update(value)
    return item


def body(image: str, context: list[Any]) -> dict[str, Any]:
    """A ``/predict`` body as Label Studio sends it for a smart-tool click on ``image`` (relative to the root)."""
    from batchlabel.sync.label_config import generate_label_config

    return {
        "tasks": [{"id": 1, "data": {"image": f"/data/local-files/?d={image}"}, "annotations": [], "predictions": []}],
        "project": "1.1700000000",
        "label_config": generate_label_config([LABEL, "person"]),
        "params": {"login": None, "password": None, "context": {"result": context}},
    }


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def hostile_requests() -> dict[str, bytes]:
    """Every invalid kind of issue 12 as a raw request body (``name -> bytes``); none may get a 5xx."""
    cat = "cat.jpg"
    huge_int = body(cat, [_box(x=10**400)])
    return {
        "x_2_pow_64": _json(body(cat, [_box(x=2**64)])),
        "x_400_digits": _json(huge_int),
        "width_1e300": _json(body(cat, [{**_box(), "original_width": 1e300}])),
        "x_infinity": _json(body(cat, [_box(x=float("inf"))])),
        "x_nan": _json(body(cat, [_box(y=float("nan"))])),
        "x_string": _json(body(cat, [_box(x="12")])),
        "value_list": _json(body(cat, [{**_box(), "value": [1, 2]}])),
        "item_string": _json(body(cat, ["rect"])),
        "unknown_label": _json(body(cat, [_box(label="dinosaur")])),
        "many_regions": _json(body(cat, [_box()] * 1500)),
        "deep_nesting": b'{"tasks": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        "deep_value": _json(body(cat, [{**_box(), "meta": json.loads("[" * 200 + "]" * 200)}])),
        "traversal": _json(body("../../etc/passwd", [_box()])),
        "symlink_out": _json(body("passwd.jpg", [_box()])),
        "missing_file": _json(body("nope.jpg", [_box()])),
        "malformed_json": b'{"tasks": [',
        "no_tasks": _json({"tasks": []}),
    }


def prepare(work: Path, port: int) -> Path:
    """The document root (the cat, a name that looks encoded, a symlink out of the root) and the config file."""
    from skimage import data

    root = work / "root"
    root.mkdir(parents=True)
    cat = data.chelsea()
    Image.fromarray(cat).save(root / "cat.jpg", quality=95)
    Image.fromarray(cat).save(root / "lit%2e%2e.jpg", quality=90)
    (work / "secret.txt").write_text("root:x:0:0:not-an-image")
    (root / "passwd.jpg").symlink_to(work / "secret.txt")
    config = {
        "storage": {"root": str(root)},
        "label_studio": {"url": None, "labels": [LABEL, "person"]},
        "model": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu"},
        "preannotate": {"mode": "none", "default_label": LABEL, "outputs": ["brush"]},
        "cache": {"dir": str(work / "cache"), "max_gb": 2},
        "serve": {"host": "127.0.0.1", "port": port},
    }
    path = work / "faults.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start_server(config: Path, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "batchlabel", "-q", "serve", str(config)],
                               stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"batchlabel serve exited with {process.returncode}; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                connection.close()
                return process
        except OSError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError(f"batchlabel serve did not answer /health in 180 s; see {log}")


def _plant_damaged_entries(work: Path, stop: threading.Event, every_s: float, counts: Counter,
                           current: list[str]) -> None:
    """Every ``every_s``: a new image (new content, so never in the server's memory cache) appears in the root with a
    damaged store entry already planted for it, one kind after the other; ``current[0]`` names it for the clients."""
    from skimage import data

    from batchlabel.infer.images import file_sha256

    store = work / "cache" / "embeddings"
    cat_sha = file_sha256(work / "root" / "cat.jpg")
    sound = next(store.rglob(f"{cat_sha}.json"))
    folder = sound.parent.parent  # <store>/<model id>/p<preprocessing version>
    kinds = ("random_bytes", "size_0x0", "size_huge", "nan_features")
    pixels = data.chelsea()
    index = 0
    while not stop.wait(every_s):
        kind = kinds[index % len(kinds)]
        name = f"fault-{index}.jpg"
        image = pixels.copy()
        image[0, 0] = (index % 256, index // 256 % 256, 7)
        Image.fromarray(image).save(work / "root" / name, quality=95)
        sha = file_sha256(work / "root" / name)
        target = folder / sha[:2] / f"{sha}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = json.loads(sound.read_text())
        meta["image_sha256"] = sha
        features = np.load(sound.with_suffix(".npy"))
        if kind == "nan_features":
            features = np.full_like(features, np.nan)
        elif kind != "random_bytes":
            meta["original_size"] = [0, 0] if kind == "size_0x0" else [100000, 100000]
        np.save(target.with_suffix(".npy"), features)
        target.write_bytes(os.urandom(200) if kind == "random_bytes" else json.dumps(meta).encode())
        current[0] = name
        counts[kind] += 1
        index += 1


def _client(port: int, deadline: float, seed: int, hostile: dict[str, bytes], results: dict[str, Any],
            lock: threading.Lock, current_fault: list[str]) -> None:
    rng = random.Random(seed)
    valid = {name: _json(body(name, [_box(x=rng.uniform(1, 20))])) for name in ("cat.jpg", "lit%252e%252e.jpg")}
    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    latencies: list[float] = []
    resets = 0
    reencoded: set[str] = set()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connections = 1
    while time.monotonic() < deadline:
        draw = rng.random()
        fault = current_fault[0]
        if draw < 0.1 and fault:
            kind = "damaged_store_entry"
            payload = _json(body(fault, [_box()]))
        elif draw < 0.5:
            kind = rng.choice(sorted(valid))
            payload = valid[kind]
        else:
            kind = rng.choice(sorted(hostile))
            payload = hostile[kind]
        start = time.perf_counter()
        try:
            connection.request("POST", "/predict", body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            resets += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connections += 1
            continue
        if kind in valid:  # damaged entries are encoded again: not a click latency
            latencies.append((time.perf_counter() - start) * 1000.0)
        statuses[status] += 1
        by_kind.setdefault(kind, Counter())[status] += 1
        if kind == "damaged_store_entry" and status == 200:
            reencoded.add(fault)
        if response.getheader("connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connections += 1
    connection.close()
    with lock:
        results["statuses"].update(statuses)
        for kind, counter in by_kind.items():
            results["by_kind"].setdefault(kind, Counter()).update(counter)
        results["latencies_ms"].extend(latencies)
        results["resets"] += resets
        results["reencoded"] |= reencoded
        results["connections"] += connections


def run(*, clients: int, duration_s: float, damage_every_s: float = 3.0, work: Path | None = None) -> dict[str, Any]:
    """Run the load test; returns the JSON-ready figures (see the module docstring)."""
    owned = None
    if work is None:
        owned = tempfile.TemporaryDirectory(prefix="batchlabel-faults-")
        work = Path(owned.name)
    port = _free_port()
    config = prepare(work, port)
    log = work / "serve.log"
    process = _start_server(config, port, log)
    server = psutil.Process(process.pid)
    try:
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for image in ("cat.jpg", "lit%252e%252e.jpg"):  # encode once before the clock starts
            warm.request("POST", "/predict", body=_json(body(image, [_box()])),
                         headers={"Content-Type": "application/json"})
            warm.getresponse().read()
        warm.close()
        hostile = hostile_requests()
        results: dict[str, Any] = {"statuses": Counter(), "by_kind": {}, "latencies_ms": [], "resets": 0,
                                   "connections": 0, "reencoded": set()}
        lock = threading.Lock()
        stop = threading.Event()
        damage: Counter = Counter()
        rss: list[tuple[float, int]] = []
        started = time.monotonic()
        deadline = started + duration_s
        current_fault = [""]
        threads = [threading.Thread(target=_client, args=(port, deadline, seed, hostile, results, lock, current_fault))
                   for seed in range(clients)]
        threads.append(threading.Thread(target=_plant_damaged_entries,
                                        args=(work, stop, damage_every_s, damage, current_fault)))
        for thread in threads:
            thread.start()
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - started, server.memory_info().rss))
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(300)
        rss.append((time.monotonic() - started, server.memory_info().rss))
    finally:
        process.terminate()
        process.wait(30)
    statuses: Counter = results["statuses"]
    latencies = sorted(results["latencies_ms"])
    first = [value for t, value in rss if t <= min(5.0, duration_s / 3)]
    last = [value for t, value in rss if t >= duration_s - min(5.0, duration_s / 3)]
    figures = {
        "clients": clients,
        "duration_s": duration_s,
        "requests": sum(statuses.values()),
        "requests_per_s": round(sum(statuses.values()) / duration_s, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "connection_resets": results["resets"],
        "connections_opened": results["connections"],
        "by_kind": {kind: {str(k): v for k, v in sorted(c.items())} for kind, c in sorted(results["by_kind"].items())},
        "store_damage_injected": dict(damage),
        "damaged_images_reencoded": len(results["reencoded"]),  # each one store-miss encode in the server
        "valid_click_ms": {
            "p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
        },
        "server_rss_mb": {
            "first_s_avg": round(sum(first) / len(first) / 2**20, 1) if first else None,
            "last_s_avg": round(sum(last) / len(last) / 2**20, 1) if last else None,
            "max": round(max(value for _t, value in rss) / 2**20, 1),
            "every_5s": [round(value / 2**20) for t, value in rss if int(t * 2) % 10 == 0],
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
    }
    if owned is not None:
        owned.cleanup()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--damage-every-s", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(run(clients=args.clients, duration_s=args.duration_s, damage_every_s=args.damage_every_s),
                     indent=2))


if __name__ == "__main__":
    main()
