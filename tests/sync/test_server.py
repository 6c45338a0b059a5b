"""The embedded Label Studio manager against a real Label Studio process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from batchlabel.sync.label_config import generate_label_config, parse_control_names
from batchlabel.sync.server import (
    PID_FILE,
    TEMPLATE_CREDENTIALS,
    EmbeddedLabelStudio,
    LabelStudioStartError,
    ensure_template,
    find_free_port,
    process_alive,
)

pytestmark = pytest.mark.labelstudio


def test_harness_server_is_real_and_accepts_the_legacy_token(label_studio) -> None:
    response = httpx.get(f"{label_studio.url}/api/current-user/whoami",
                         headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["email"] == label_studio.username


def test_sdk_creates_a_project_with_the_generated_label_config(label_studio) -> None:
    xml = generate_label_config(["cat", "person"])
    project = label_studio.client.projects.create(title="server-test", label_config=xml)
    fetched = label_studio.client.projects.get(id=project.id)
    names, labels = parse_control_names(fetched.label_config)
    assert labels == ["cat", "person"]
    assert (names.keypoint, names.rectangle, names.polygon, names.brush) == ("keypoint", "rect", "polygon", "brush")


def test_local_files_are_served_from_the_document_root(label_studio) -> None:
    folder = label_studio.document_root / "served"
    folder.mkdir(exist_ok=True)
    (folder / "hello.txt").write_text("hi")
    project = label_studio.client.projects.create(title="storage-test", label_config=generate_label_config(["cat"]))
    label_studio.client.import_storage.local.create(project=project.id, path=str(folder), use_blob_urls=True)
    response = httpx.get(f"{label_studio.url}/data/local-files/", params={"d": "served/hello.txt"},
                         headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=10)
    assert response.status_code == 200
    assert response.text == "hi"


def test_a_private_server_stops_and_restarts_on_the_same_port_keeping_its_data(label_studio_factory) -> None:
    live = label_studio_factory()
    project = live.client.projects.create(title="survives-restart", label_config=generate_label_config(["cat"]))
    url = live.url
    live.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health/", timeout=2)
    live.start()
    assert live.url == url
    assert live.client.projects.get(id=project.id).title == "survives-restart"


_UP_LIKE = """
import sys, time
from pathlib import Path
from batchlabel.sync.server import TEMPLATE_CREDENTIALS, EmbeddedLabelStudio, ensure_template
base = Path(sys.argv[1])
server = EmbeddedLabelStudio(data_dir=base / "ls-data", document_root=base / "root", credentials=TEMPLATE_CREDENTIALS,
                             template_dir=ensure_template(), port=int(sys.argv[2]))
server.start()
print(server.url, server._process.pid, flush=True)
time.sleep(600)
"""


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _server(base: Path, port: int | None) -> EmbeddedLabelStudio:
    return EmbeddedLabelStudio(data_dir=base / "ls-data", document_root=base / "root",
                               credentials=TEMPLATE_CREDENTIALS, template_dir=ensure_template(), port=port)


def test_a_server_left_by_a_killed_batchlabel_is_found_and_stopped(tmp_path: Path) -> None:
    """The `up` behaviour of issue 21: a batchlabel process SIGKILLed leaves its Label Studio running in its own
    session, holding the port; the next start on that data dir finds it by the pid file, checks that pid is Label
    Studio on this data dir, stops it and starts on the same port (also when the dead batchlabel's pid now belongs to
    a later process). While its batchlabel still runs, a second start is refused, naming both pids."""
    port = find_free_port()
    parent = subprocess.Popen([sys.executable, "-c", _UP_LIKE, str(tmp_path), str(port)], stdout=subprocess.PIPE,
                              text=True)
    orphan = 0
    reuser: subprocess.Popen[bytes] | None = None
    try:
        url, pid = parent.stdout.readline().split()  # type: ignore[union-attr]
        orphan = int(pid)
        recorded = json.loads((tmp_path / "ls-data" / PID_FILE).read_text())
        assert (recorded["pid"], recorded["owner_pid"], recorded["port"]) == (orphan, parent.pid, port)
        assert not any("--password=" in arg or "--user-token=" in arg for arg in recorded["command"])
        with pytest.raises(LabelStudioStartError, match=f"pid {orphan}, port {port}.*process {parent.pid}"):
            _server(tmp_path, port).start()  # its batchlabel is alive: two starts on one data dir
        parent.kill()
        parent.wait(timeout=30)
        assert _healthy(url), "Label Studio survives its batchlabel's SIGKILL (its own session)"
        # the dead owner's pid reused by a process that started after the file was written: not an owner
        reuser = subprocess.Popen(["sleep", "60"])
        pid_path = tmp_path / "ls-data" / PID_FILE
        pid_path.write_text(json.dumps({**recorded, "owner_pid": reuser.pid}))
        os.utime(pid_path, (time.time() - 3600, time.time() - 3600))

        again = _server(tmp_path, port)
        again.start()
        try:
            assert not process_alive(orphan) and again.url == f"http://127.0.0.1:{port}" and _healthy(again.url)
            assert json.loads(again.pid_path.read_text())["owner_pid"] == os.getpid()
        finally:
            again.stop()
        assert not again.pid_path.exists()
    finally:
        parent.kill()
        if reuser is not None:
            reuser.kill()
            reuser.wait()
        if orphan:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)


def test_a_port_held_by_another_program_is_replaced_by_a_free_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`make run` after another program took port 8080 failed "port 8080 was busy ... pick a free port" after a
    minute; now Label Studio starts on a free port and says so (`up` prints the URL)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        server = _server(tmp_path, taken)
        with caplog.at_level(logging.WARNING, logger="batchlabel.sync.server"), server:
            assert server.url != f"http://127.0.0.1:{taken}" and _healthy(server.url)
        assert f"port {taken} is taken by another program; Label Studio starts on port" in caplog.text


def test_a_stale_pid_file_never_signals_a_process_that_is_not_label_studio(tmp_path: Path) -> None:
    """The pid in the file was reused by another program (here a `sleep`): it is left alone, the file removed."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        server = _server(tmp_path, None)
        server.data_dir.mkdir(parents=True)
        server.pid_path.write_text(json.dumps({"pid": sleeper.pid, "owner_pid": 999999999, "port": 1,
                                               "command": []}))
        server._take_over_earlier_server()
        time.sleep(0.2)
        assert sleeper.poll() is None and not server.pid_path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
