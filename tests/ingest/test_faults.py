"""Issue 12 on the ingestion side, against the real Label Studio with LiteMedSAM: symlinks out of the root are never
ingested nor echoed (case 1); a full disk (a real tmpfs) fails files transiently and a later run retries them, while
a corrupt file stays failed until ``--retry-failed`` (case 5); files deleted before their push never become tasks
(case 6); a corrupt journal is named with what to do (case 8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from batchlabel.ingest.retry import retry_delay_s
from tests.ingest.ingest_helpers import (
    BATCHLABEL,
    project_tasks,
    run_cli,
    sample_images,
    wait_for,
    write_png,
    write_yaml_config,
)

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def test_symlinks_out_of_the_root_are_not_ingested_nor_echoed(label_studio, make_config, tmp_path: Path) -> None:
    config = make_config()
    root = config.storage.root
    write_png(root / "real.png", sample_images(1)[0])
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-12 root:x:0:0")
    (root / "passwd.jpg").symlink_to("/etc/passwd")
    (root / "secret.jpg").symlink_to(secret)
    (root / "inside.png").symlink_to(root / "real.png")  # inside the root: allowed (same content, a duplicate)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    run = run_cli("run", str(cfg), "--json")
    assert run.returncode == 0, run.stderr
    tasks = project_tasks(label_studio.client, config.label_studio.project)
    assert [t["data"]["image"] for t in tasks] in (["/data/local-files/?d=real.png"],
                                                   ["/data/local-files/?d=inside.png"])
    assert "passwd.jpg: skipped: a symlink resolving outside the document root" in run.stderr
    assert "secret.jpg: skipped" in run.stderr
    journal_bytes = config.journal_path.read_bytes() + b"".join(
        p.read_bytes() for p in config.journal_path.parent.glob("journal.sqlite3*"))
    for output in (run.stdout + run.stderr, journal_bytes.decode("latin-1")):
        assert "TOPSECRET" not in output and "root:x:0:0" not in output

    encode = run_cli("encode", str(cfg), "--json")
    assert encode.returncode == 0, encode.stderr
    assert json.loads(encode.stdout)["images"] == 2  # real.png and inside.png only
    check = run_cli("check", str(cfg))
    assert "2 image file(s)" in check.stdout and "TOPSECRET" not in check.stdout + check.stderr


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A real 5 MiB tmpfs (room for two LiteMedSAM embeddings) that :func:`grow` enlarges; root only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the disk-full case runs as root in CI)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=30, check=False)


def test_disk_full_failures_are_retried_by_the_next_run_and_status_tells_them_apart(
        label_studio, make_config, small_tmpfs: Path, tmp_path: Path) -> None:
    config = make_config(cache={"dir": str(small_tmpfs / "cache")})
    root = config.storage.root
    for index, image in enumerate(sample_images(5, side=64)):
        write_png(root / f"img{index}.png", image)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    first = run_cli("run", str(cfg), "--json")
    assert first.returncode == 1
    report = json.loads(first.stdout)
    full = [f for f in report["failures"] if "No space left on device" in f["reason"]]
    assert full, report["failures"]
    status = json.loads(run_cli("status", str(cfg), "--json").stdout)
    kinds = {f["path"]: f["kind"] for f in status["failures"]}
    assert kinds["broken.png"] == "permanent"
    assert all(kinds[f["path"]] == "transient" for f in full)
    text = run_cli("status", str(cfg)).stdout
    assert "(transient, retried by the next pass" in text and "(permanent, retried when the file changes" in text

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_tmpfs)], check=True, timeout=30)
    time.sleep(retry_delay_s(1))  # the first back-off
    second = run_cli("run", str(cfg), "--json")
    report = json.loads(second.stdout)
    assert [f["path"] for f in report["failures"]] == ["broken.png"], report["failures"]
    tasks = project_tasks(label_studio.client, config.label_studio.project)
    assert len(tasks) == 5  # every image became a task once the disk had room

    attempts_before = {f["path"]: f["attempts"] for f in status["failures"]}["broken.png"]
    third = run_cli("run", str(cfg), "--json", "--retry-failed")
    assert third.returncode == 1
    after = json.loads(run_cli("status", str(cfg), "--json").stdout)["failures"]
    assert [(f["path"], f["attempts"] > attempts_before) for f in after] == [("broken.png", True)]


def test_files_deleted_before_their_push_never_become_tasks(label_studio, make_config, tmp_path: Path) -> None:
    config = make_config()
    root = config.storage.root
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    log_path = tmp_path / "watch.log"
    with log_path.open("w") as log:
        watch = subprocess.Popen([BATCHLABEL, "watch", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_for(lambda: "watching" in log_path.read_text(), timeout_s=180), log_path.read_text()
        names = [f"gone-{uuid.uuid4().hex[:6]}-{i}.png" for i in range(3)]
        for name, image in zip(names, sample_images(3), strict=True):
            write_png(root / name, image)
        time.sleep(1.0)
        for name in names:
            (root / name).unlink()
        dropped = wait_for(lambda: log_path.read_text().count("deleted before its task was pushed") >= 3,
                           timeout_s=180)
        assert dropped, log_path.read_text()[-3000:]
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.wait(120)
    assert project_tasks(label_studio.client, config.label_studio.project) == []
    run = run_cli("run", str(cfg), "--json")  # after a restart: still nothing, nothing journaled
    assert run.returncode == 0, run.stderr
    assert project_tasks(label_studio.client, config.label_studio.project) == []
    assert json.loads(run.stdout)["stages"]["pushed"] == 0


def test_corrupt_journal_stops_run_with_the_file_named(label_studio, make_config, tmp_path: Path) -> None:
    config = make_config()
    write_png(config.storage.root / "a.png", sample_images(1)[0])
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    config.journal_path.parent.mkdir(parents=True, exist_ok=True)
    config.journal_path.write_bytes(os.urandom(8192))
    run = run_cli("run", str(cfg))
    assert run.returncode == 2
    assert str(config.journal_path) in run.stderr and "Move it aside" in run.stderr
    assert "Traceback" not in run.stderr
    config.journal_path.rename(config.journal_path.with_suffix(".corrupt"))  # what the message says to do
    again = run_cli("run", str(cfg), "--json")
    assert again.returncode == 0, again.stderr
    assert len(project_tasks(label_studio.client, config.label_studio.project)) == 1
