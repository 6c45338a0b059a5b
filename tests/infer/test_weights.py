"""batchlabel.infer.weights: the download path against a real loopback HTTP server (good file, truncated file, wrong
checksum, unreachable server, an endless body, a trickle, SIGTERM mid-download, a killed download's leftover),
the verified cache and its marker."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlabel.infer import weights
from batchlabel.infer.model_registry import MODEL_SPECS
from batchlabel.infer.weights import WeightsUnavailableError, checkpoint_sha256, resolve_checkpoint

PAYLOAD = bytes(range(256)) * 400  # 100 KiB "checkpoint"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    lie_about_length: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path in ("/endless.pt", "/trickle.pt"):
            self._stream(chunk=PAYLOAD if self.path == "/endless.pt" else b"x",
                         pause_s=0.0 if self.path == "/endless.pt" else 0.1)
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, *, chunk: bytes, pause_s: float) -> None:
        """No Content-Length, data until the client hangs up (or 120 s): an endless mirror or a trickling one."""
        self.send_response(200)
        self.end_headers()
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause_s)
        except OSError:
            pass  # the client stopped reading

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the test server
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.routes = {
        "/good.pt": PAYLOAD,
        "/truncated.pt": PAYLOAD[: len(PAYLOAD) // 2],
        "/tampered.pt": PAYLOAD[:-1] + b"X",
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _spec(url: str):
    return dataclasses.replace(
        MODEL_SPECS["mobile_sam"], url=url, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size_bytes=len(PAYLOAD),
        filename="test_weights.pt",
    )

def test_download_good_file_then_cached(server: str, tmp_path: Path) -> None:
    spec = _spec(f"{server}/good.pt")
    path = resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    assert path == tmp_path / "test_weights.pt" and path.read_bytes() == PAYLOAD
    offline = dataclasses.replace(spec, url="http://127.0.0.1:9/never-contacted")
    assert resolve_checkpoint(offline, "auto", weights_dir=tmp_path) == path  # verified cache, no network
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []


@pytest.mark.parametrize(("route", "fragment"), [("/truncated.pt", "truncated"), ("/tampered.pt", "sha256")])
def test_bad_download_is_deleted_and_explained(server: str, tmp_path: Path, route: str, fragment: str) -> None:
    spec = _spec(f"{server}{route}")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    message = str(info.value)
    assert fragment in message and spec.url in message and spec.sha256 in message
    assert str(tmp_path / "test_weights.pt") in message
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind


def test_unreachable_server_says_which_file_to_put_where(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    spec = _spec(f"http://127.0.0.1:{port}/weights.pt")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    message = str(info.value)
    assert spec.url in message and f"put it at {tmp_path / 'test_weights.pt'}" in message
    assert spec.sha256 in message and "model.checkpoint" in message
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_checkpoint(spec, str(tmp_path / "nope.pt"), weights_dir=tmp_path)


def test_downloaded_file_is_recorded_so_it_is_hashed_once(server: str, tmp_path: Path) -> None:
    """The download writes ``<file>.verified.json`` (size, mtime, sha256); a changed file no longer matches it."""
    path = resolve_checkpoint(_spec(f"{server}/good.pt"), "auto", weights_dir=tmp_path)
    marker = json.loads((tmp_path / "test_weights.pt.verified.json").read_text())
    assert marker["sha256"] == hashlib.sha256(PAYLOAD).hexdigest() and marker["size"] == len(PAYLOAD)
    path.write_bytes(PAYLOAD[:-1] + b"Y")  # same size, another mtime: the marker is stale, the file is hashed again
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, marker["mtime_ns"] + 1_000_000_000))
    assert checkpoint_sha256(path, remember=True) == hashlib.sha256(PAYLOAD[:-1] + b"Y").hexdigest()


def test_endless_body_stops_at_the_expected_size_plus_one(server: str, tmp_path: Path) -> None:
    """A mirror that sends more than the checkpoint's size: read up to size + 1 bytes, said so, nothing left."""
    spec = _spec(f"{server}/endless.pt")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    message = str(info.value)
    assert f"more than the expected {len(PAYLOAD)} bytes (stopped reading at {len(PAYLOAD) + 1})" in message
    assert "truncated" not in message and spec.url in message and str(tmp_path / "test_weights.pt") in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("limits", "fragment"), [
    ({"DOWNLOAD_DEADLINE_S": 0.5}, "not finished within the 0.5 s deadline"),
    ({"DOWNLOAD_RATE_GRACE_S": 0.5, "DOWNLOAD_MIN_BYTES_PER_S": 1000}, "too slow"),
])
def test_trickling_mirror_ends_at_the_deadline_or_the_minimum_rate(
        server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: dict[str, float], fragment: str) -> None:
    """A byte every 0.1 s never trips the per-read timeout; the overall deadline and the minimum rate do."""
    for name, value in limits.items():
        monkeypatch.setattr(weights, name, value)
    spec = _spec(f"{server}/trickle.pt")
    with pytest.raises(WeightsUnavailableError, match=fragment) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    assert "the partial file was deleted" in str(info.value) and list(tmp_path.iterdir()) == []


_DOWNLOAD_SCRIPT = """
import dataclasses, sys
from pathlib import Path
from batchlabel.infer.model_registry import MODEL_SPECS
from batchlabel.infer.weights import resolve_checkpoint
spec = dataclasses.replace(MODEL_SPECS["mobile_sam"], url=sys.argv[1], sha256="0" * 64, size_bytes=10**9,
                           filename="test_weights.pt")
resolve_checkpoint(spec, "auto", weights_dir=Path(sys.argv[2]))
"""


def test_sigterm_mid_download_removes_the_part_file(server: str, tmp_path: Path) -> None:
    """A real process downloading from a trickling mirror gets SIGTERM: it exits 143 and its ``.part`` is gone."""
    process = subprocess.Popen([sys.executable, "-c", _DOWNLOAD_SCRIPT, f"{server}/trickle.pt", str(tmp_path)],
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(tmp_path.glob("*.part")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(tmp_path.glob("*.part")), "the download never started"
        time.sleep(0.3)  # into the body
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert list(tmp_path.iterdir()) == []


def test_a_killed_downloads_part_is_removed_by_the_next_download(server: str, tmp_path: Path) -> None:
    """SIGKILL leaves a ``.part`` nobody writes; the next download removes it, a fresh one (another process's
    download in progress) is left alone."""
    stale = tmp_path / ".test_weights.pt.killed.part"
    fresh = tmp_path / ".test_weights.pt.running.part"
    for part in (stale, fresh):
        part.write_bytes(b"half")
    old = time.time() - weights.STALE_PART_S - 10
    os.utime(stale, (old, old))
    resolve_checkpoint(_spec(f"{server}/good.pt"), "auto", weights_dir=tmp_path)
    assert not stale.exists() and fresh.exists()
