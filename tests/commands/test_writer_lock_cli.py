"""Issue 21 case 1 as a user meets it: two ``batchlabel run`` on one config at once, and ``run`` (a cron job) next to
the ``watch`` daemon. Real CLI processes, the session's Label Studio, LiteMedSAM real weights, sidecar boxes so each
image gets a prediction: one task and one prediction per file, whatever the order, and the messages name the holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess

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

BOXES = {"mode": "boxes", "boxes_from": ["sidecar"], "outputs": ["rectangle"]}


def _write_images(root, names: list[str], offset: int = 0) -> None:
    for name, image in zip(names, sample_images(len(names) + offset, side=64)[offset:], strict=True):
        sidecar(root / name, [("cat", [4.0, 4.0, 50.0, 50.0])])
        write_png(root / name, image)


def _assert_once_each(ls, title: str, names: list[str]) -> None:
    tasks = project_tasks(ls, title)
    assert sorted(rel_path_from_url(t["data"]["image"]) for t in tasks) == sorted(names)  # no second task
    for task in tasks:
        assert len([p for p in task["predictions"] if p["model_version"].startswith("batchlabel")]) == 1, task["id"]


def _popen(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([BATCHLABEL, *args], text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def test_two_runs_at_once_give_one_task_and_one_prediction_per_file(label_studio, make_config, tmp_path):
    config = make_config(preannotate=BOXES, model={"batch_size": 2})
    names = [f"img{i}.png" for i in range(3)]
    _write_images(config.storage.root, names)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    runs = [_popen("run", str(cfg), "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    waited = [err for _, err in outputs if "waiting for batchlabel run (pid " in err]
    assert len(waited) == 1, [err[-2000:] for _, err in outputs]  # the second waited for the first, named
    pids = {str(run.pid) for run in runs}
    assert any(f"(pid {pid}" in waited[0] for pid in pids)
    reports = [json.loads(out) for out, _ in outputs]
    assert sorted(r["pushed"] for r in reports) == [0, 3]  # the second found everything done
    _assert_once_each(label_studio.client, config.label_studio.project, names)


def test_run_next_to_watch_leaves_the_files_to_it_and_exits_0(label_studio, make_config, tmp_path):
    config = make_config(preannotate=BOXES)
    root = config.storage.root
    names = ["a.png", "b.png"]
    _write_images(root, names)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    log_path = tmp_path / "watch.log"
    with log_path.open("w") as log:
        daemon = _popen("watch", str(cfg), stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_for(lambda: "watching" in log_path.read_text(), timeout_s=180), log_path.read_text()
        more = ["c.png", "d.png"]
        _write_images(root, more, offset=2)
        cron = run_cli("run", str(cfg), "--json")  # what a cron job next to the daemon does
        assert cron.returncode == 0, cron.stderr
        assert f"batchlabel watch (pid {daemon.pid}" in cron.stderr and "it takes the new files" in cron.stderr
        assert json.loads(cron.stdout)["writer"]["pid"] == daemon.pid
        status = json.loads(run_cli("status", str(cfg), "--json").stdout)
        assert (status["writer"]["command"], status["writer"]["pid"]) == ("watch", daemon.pid)
        second = run_cli("watch", str(cfg), timeout_s=60)
        assert second.returncode == 2 and f"(pid {daemon.pid}" in second.stderr
        assert "one ingestion daemon per cache folder" in second.stderr and "Traceback" not in second.stderr
        everything = names + more
        done = wait_for(lambda: len(project_tasks(label_studio.client, config.label_studio.project)) >= 4,
                        timeout_s=240)
        assert done, log_path.read_text()[-3000:]
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=120) == 0
    _assert_once_each(label_studio.client, config.label_studio.project, everything)
    assert json.loads(run_cli("status", str(cfg), "--json").stdout)["writer"] is None  # released with the daemon
