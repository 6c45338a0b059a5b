"""``batchlabel watch`` and crash/outage resilience, as a user runs it: CLI subprocesses, a real Label Studio,
LiteMedSAM real weights, boxes from sidecar files so every image gets a prediction."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest

from batchlabel.sync.client import rel_path_from_url
from tests.ingest.ingest_helpers import (
    BATCHLABEL,
    project_tasks,
    run_cli,
    sample_images,
    sidecar,
    wait_for,
    write_png,
    write_yaml_config,
)

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]

BOXES = {"mode": "boxes", "boxes_from": ["sidecar"], "outputs": ["brush", "rectangle"]}


def _start(*args: str, log_path) -> subprocess.Popen:
    return subprocess.Popen([BATCHLABEL, *args], stdout=subprocess.DEVNULL, stderr=log_path.open("w"),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _with_predictions(ls, title: str, version_prefix: str = "batchlabel") -> dict[str, dict]:
    tasks = project_tasks(ls, title)
    return {rel_path_from_url(t["data"]["image"]): t for t in tasks
            if any(p["model_version"].startswith(version_prefix) for p in t["predictions"])}


def test_watch_ingests_files_as_they_become_stable(label_studio, make_config, tmp_path):
    from batchlabel.infer.decoder import MaskDecoder, Prompt
    from batchlabel.infer.models import load_model
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.sync.results import parse_result_mask

    config = make_config(preannotate=BOXES, storage={"stable_s": 0.5})
    root = config.storage.root
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    daemon = _start("watch", str(cfg), "--summary-every-s", "2", log_path=tmp_path / "watch.log")
    try:
        assert wait_for(lambda: "watching" in (tmp_path / "watch.log").read_text(), timeout_s=180), \
            (tmp_path / "watch.log").read_text()
        images = sample_images(4)
        box = [8.0, 10.0, 70.0, 80.0]
        # 1: plain write
        sidecar(root / "a" / "one.png", [("cat", box)])
        write_png(root / "a" / "one.png", images[0])
        # 2: written slowly in chunks
        staged = tmp_path / "two.png"
        write_png(staged, images[1])
        data = staged.read_bytes()
        sidecar(root / "a" / "two.png", [("person", box)])
        with (root / "a" / "two.png").open("wb") as handle:
            for start in range(0, len(data), len(data) // 4 + 1):
                handle.write(data[start:start + len(data) // 4 + 1])
                handle.flush()
                time.sleep(0.2)
        # 3: moved in atomically from a temporary name
        sidecar(root / "b" / "three.png", [("cat", box)])
        write_png(root / "b" / "three.png.part", images[2])
        os.rename(root / "b" / "three.png.part", root / "b" / "three.png")
        # 4: a duplicate under another name, and a bad file
        (root / "b" / "copy.png").write_bytes((root / "a" / "one.png").read_bytes())
        (root / "b" / "bad.png").write_bytes(b"garbage, not a png")
        expected = {"a/one.png", "a/two.png", "b/three.png"}
        done = wait_for(lambda: set(_with_predictions(label_studio.client, config.label_studio.project)) >= expected,
                        timeout_s=240)
        assert done, (tmp_path / "watch.log").read_text()[-3000:]
        status = json.loads(run_cli("status", str(cfg), "--json").stdout)
        assert [f["path"] for f in status["failures"]] == ["b/bad.png"]
        summary = ("summary: journal: pushed 3, duplicate 1, failed 1, in progress 0; "
                   "since start: encoded 3, predicted 3, pushed 3")  # logged every 2 s
        assert wait_for(lambda: summary in (tmp_path / "watch.log").read_text(), timeout_s=30), \
            (tmp_path / "watch.log").read_text()[-3000:]
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
    assert code == 0
    assert "stopped:" in (tmp_path / "watch.log").read_text()
    tasks = project_tasks(label_studio.client, config.label_studio.project)
    assert sorted(rel_path_from_url(t["data"]["image"]) for t in tasks) == sorted(expected)  # copy: no second task
    model = load_model(config.model)
    decoder = MaskDecoder.from_model(model)
    store = EmbeddingStore(config.embeddings_dir, max_bytes=10**9)
    for task in tasks:
        [prediction] = task["predictions"]
        [brush] = [item for item in prediction["result"] if item["type"] == "brushlabels"]
        embedding = store.get(task["meta"]["sha256"], model.model_id)
        reference = decoder.decode(embedding, Prompt(box=np.asarray(box, np.float32))).masks[0]
        assert np.array_equal(parse_result_mask(brush)[1], reference)


def test_kill_9_at_random_moments_then_resume_gives_one_task_and_one_prediction_each(
        label_studio, make_config, tmp_path):
    config = make_config(preannotate=BOXES, model={"batch_size": 2})
    root = config.storage.root
    count = 14
    for index, image in enumerate(sample_images(count, side=64)):
        path = root / f"d{index % 3}" / f"img{index:02d}.png"
        sidecar(path, [("cat", [4.0, 4.0, 50.0, 50.0])])
        write_png(path, image)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    rng = random.Random(4)
    for attempt in range(3):
        process = _start("run", str(cfg), log_path=tmp_path / f"run{attempt}.log")
        time.sleep(rng.uniform(4.0, 14.0))
        process.kill()  # SIGKILL: no cleanup at all
        process.wait()
    final = run_cli("run", str(cfg), "--json", timeout_s=600)
    assert final.returncode == 0, final.stderr[-3000:]
    tasks = project_tasks(label_studio.client, config.label_studio.project)
    paths = [rel_path_from_url(t["data"]["image"]) for t in tasks]
    assert len(paths) == count and len(set(paths)) == count
    version = json.loads(run_cli("status", str(cfg), "--json").stdout)["stages"]
    assert version["pushed"] == count
    for task in tasks:
        assert len([p for p in task["predictions"] if p["model_version"].startswith("batchlabel")]) == 1, task["id"]


def test_a_label_studio_outage_loses_nothing(label_studio_factory, make_config, tmp_path):
    live = label_studio_factory()
    config = make_config(label_studio={"url": live.url, "api_key": live.api_key}, preannotate={"mode": "none"})
    config = config.model_copy(update={"storage": config.storage.model_copy(update={"root": live.document_root})})
    root = config.storage.root / "outage"
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    daemon = _start("watch", str(cfg), log_path=tmp_path / "watch.log")
    try:
        assert wait_for(lambda: "watching" in (tmp_path / "watch.log").read_text(), timeout_s=180)
        images = sample_images(6, side=64)
        for index in range(3):
            write_png(root / f"before{index}.png", images[index])
        assert wait_for(lambda: len(project_tasks(live.client, config.label_studio.project)) == 3, timeout_s=120)
        live.stop()
        for index in range(3, 6):
            write_png(root / f"during{index}.png", images[index])
        time.sleep(30)  # Label Studio is down for 30 s while files arrive
        live.start()
        assert wait_for(lambda: len(project_tasks(live.client, config.label_studio.project)) == 6, timeout_s=120), \
            (tmp_path / "watch.log").read_text()[-3000:]
    finally:
        daemon.send_signal(signal.SIGINT)
        code = daemon.wait(timeout=60)
    assert code == 0
    assert "Label Studio unavailable" in (tmp_path / "watch.log").read_text()
    paths = [rel_path_from_url(t["data"]["image"]) for t in project_tasks(live.client, config.label_studio.project)]
    assert sorted(paths) == sorted({*(f"outage/before{i}.png" for i in range(3)),
                                    *(f"outage/during{i}.png" for i in range(3, 6))})
