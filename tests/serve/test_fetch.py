"""Fetching uploaded images from Label Studio: legacy token, personal access token exchange, size and error codes
(against a loopback HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from batchlabel.serve.fetch import ImageFetcher
from batchlabel.serve.sources import ImageSourceError, RemoteImage

LEGACY = "0123456789abcdef0123456789abcdef01234567"
PAT = "eyJhbGciOiJIUzI1NiJ9." + "x" * 40 + ".signature"
ACCESS = "access-token-1"


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/token/refresh/" and body.get("refresh") == PAT:
            self._send(200, json.dumps({"access": ACCESS}).encode())
        else:
            self._send(401, b"{}")

    def do_GET(self) -> None:  # noqa: N802
        auth = self.headers.get("Authorization")
        Handler.seen.append((self.path, auth))
        if auth not in (f"Token {LEGACY}", f"Bearer {ACCESS}"):
            self._send(401, b"{}")
        elif self.path == "/data/upload/1/big.jpg":
            self._send(200, b"x" * 5000)
        elif self.path == "/data/upload/1/cat.jpg":
            self._send(200, b"jpeg bytes")
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("key", [LEGACY, PAT])
def test_uploads_are_fetched_with_either_kind_of_key(base_url: str, key: str) -> None:
    fetcher = ImageFetcher(label_studio_url=base_url, api_key=key, timeout_s=5, max_bytes=1000)
    assert fetcher.fetch(RemoteImage(f"{base_url}/data/upload/1/cat.jpg", label_studio=True)) == b"jpeg bytes"
    assert fetcher.fetch(RemoteImage(f"{base_url}/data/upload/1/cat.jpg", label_studio=True)) == b"jpeg bytes"
    fetcher.close()


@pytest.mark.parametrize(
    ("path", "key", "status", "message"),
    [
        ("/data/upload/1/missing.jpg", LEGACY, 404, "not found"),
        ("/data/upload/1/big.jpg", LEGACY, 413, "larger than"),
        ("/data/upload/1/cat.jpg", "wrong-key", 502, "api_key"),
    ],
)
def test_fetch_errors_map_to_statuses(base_url: str, path: str, key: str, status: int, message: str) -> None:
    fetcher = ImageFetcher(label_studio_url=base_url, api_key=key, timeout_s=5, max_bytes=1000)
    with pytest.raises(ImageSourceError) as info:
        fetcher.fetch(RemoteImage(f"{base_url}{path}", label_studio=True))
    assert info.value.status_code == status and message in info.value.message


def test_unreachable_label_studio_is_502() -> None:
    fetcher = ImageFetcher(label_studio_url="http://127.0.0.1:9", api_key=LEGACY, timeout_s=2)
    with pytest.raises(ImageSourceError) as info:
        fetcher.fetch(RemoteImage("http://127.0.0.1:9/data/upload/1/cat.jpg", label_studio=True))
    assert info.value.status_code == 502


def test_remote_urls_get_no_credentials(base_url: str) -> None:
    Handler.seen.clear()
    fetcher = ImageFetcher(label_studio_url=base_url, api_key=LEGACY, timeout_s=5)
    with pytest.raises(ImageSourceError):
        fetcher.fetch(RemoteImage(f"{base_url}/data/upload/1/cat.jpg", label_studio=False))
    assert Handler.seen == [("/data/upload/1/cat.jpg", None)]
