"""Ray scale-out benchmark: ``batchlabel encode --ray`` with 1 and 2 CPU actors against a local ``batchlabel encode``.

Prints one JSON object on stdout. A real two-node cluster is started on this machine the way a user starts one
(``ray start --head --num-cpus=1``, then ``ray start --address=... --num-cpus=1``; see ``tests/ingest/ray_cluster.py``)
and stopped at the end. Images: real photos from ``skimage.data`` as JPEGs (``--size`` px long side); every run
encodes them into a fresh store with LiteMedSAM's real weights (torch, fp32, CPU).

Per run: ``images_per_s`` = images / the command's encode wall time (model loading in the driver excluded for the
local run; for Ray it includes starting the actors and loading the model in each, which is what a job pays);
``encoder_s_per_image`` = encoder time per image (in the actors for Ray); ``overhead_s_per_image`` = (wall time x
actors - encoder time) / images: what each image costs beyond the encoder (Ray: scheduling, actor start, model
load, reads, store writes; local: reads, decode, store writes). ``local`` uses both cores' OpenMP threads,
``local_1_thread`` one (as each Ray actor does); ``ray_overhead_s_per_image_vs_local_1_thread`` = (Ray wall x actors -
local 1-thread wall) / images.

    python benchmarks/ray_encode.py [--images N] [--size PX]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.encode import _write_images  # noqa: E402
from tests.ingest.ray_cluster import TwoNodeCluster  # noqa: E402

log = logging.getLogger("benchmarks.ray_encode")
BATCHLABEL = str(Path(sys.executable).with_name("batchlabel"))


def _config(folder: Path, root: Path, name: str) -> Path:
    raw = {
        "storage": {"root": str(root), "include": ["**/*.jpg"]},
        "label_studio": {"labels": ["cat"]},
        "model": {"name": "litemedsam", "device": "cpu", "runtime": "torch", "batch_size": 2},
        "cache": {"dir": str(folder / f"cache-{name}")},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _encode(env: dict[str, str], config: Path, *extra: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([BATCHLABEL, "encode", str(config), "--json", *extra], env=env, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"batchlabel encode {' '.join(extra)} failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    report["process_s"] = round(time.perf_counter() - started, 3)
    return report


def _figures(report: dict[str, Any], actors: int, encoder_s: float) -> dict[str, Any]:
    images, wall_s = report["images"], report["wall_s"]
    return {
        "images": images, "actors": actors, "wall_s": wall_s, "process_s": report["process_s"],
        "images_per_s": round(images / wall_s, 3),
        "encoder_s_per_image": round(encoder_s / images, 3),
        "overhead_s_per_image": round((wall_s * actors - encoder_s) / images, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="long side of the test images in pixels")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from benchmarks.machine import gemm_gflops

    result: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                              "date": time.strftime("%Y-%m-%d"), "gemm_gflops_start": gemm_gflops()}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        (folder / "images").mkdir()
        _write_images(folder / "images", args.images, args.size)
        cluster = TwoNodeCluster(folder / "ray")
        try:
            cluster.start()
            local = _encode(cluster.env, _config(folder, folder / "images", "local"))
            result["local"] = _figures(local, 1, local["stage_s"]["encode"])
            # what one actor computes with (Ray gives a num_cpus=1 actor one OpenMP thread): the fair baseline
            single = _encode({**cluster.env, "OMP_NUM_THREADS": "1"}, _config(folder, folder / "images", "local1"))
            result["local_1_thread"] = _figures(single, 1, single["stage_s"]["encode"])
            for actors in (1, 2):
                log.info("Ray encode with %d actor(s)", actors)
                report = _encode(cluster.env, _config(folder, folder / "images", f"ray{actors}"),
                                 "--ray", cluster.address, "--ray-actors", str(actors))
                result[f"ray_{actors}_actor"] = {**_figures(report, actors, report["encode_s"]),
                                                 "images_by_actor": report["images_by_actor"]}
        finally:
            cluster.stop()
    local_wall = result["local_1_thread"]["wall_s"]
    result["ray_overhead_s_per_image_vs_local_1_thread"] = {
        f"{actors}_actor": round((result[f"ray_{actors}_actor"]["wall_s"] * actors - local_wall) / args.images, 3)
        for actors in (1, 2)
    }
    result["gemm_gflops_end"] = gemm_gflops()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
