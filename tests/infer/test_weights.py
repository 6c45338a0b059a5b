"""batchlabel.infer.weights: the download path against a real loopback HTTP server (good file, truncated file, wrong
checksum, unreachable server), the verified cache and its marker."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchlabel.infer.model_registry import MODEL_SPECS
from batchlabel.infer.weights import WeightsUnavailableError, checkpoint_sha256, resolve_checkpoint

PAYLOAD = bytes(range(256)) * 400  # 100 KiB "checkpoint"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    lie_about_length: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
