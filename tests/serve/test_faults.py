"""Issue 12 against a running backend (real uvicorn on a loopback port, LiteMedSAM real weights, real store files):
damaged store entries, huge numbers, the last-resort handler, names that look encoded, unknown labels, over-nested
JSON; and a fuzz run of a few hundred generated contexts on one keep-alive connection."""

from __future__ import annotations

import http.client
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from batchlabel.infer.images import file_sha256
from batchlabel.infer.store import EmbeddingStore
from tests.serve.conftest import CAT_BOX, box_context, predict_body, save_image

pytestmark = pytest.mark.slow

SIZE = (300, 451)


class Connection:
    """One keep-alive HTTP/1.1 connection; :attr:`reused` stays True while every request went over the same socket."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=120)
        self.http.connect()
        self._socket = self.http.sock
        self.reused = True

    def post(self, payload: bytes | dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.http.request("POST", "/predict", body=data, headers={"Content-Type": "application/json"})
        response = self.http.getresponse()
        answer = json.loads(response.read() or b"{}")
        self.reused = self.reused and self.http.sock is self._socket
        return response.status, answer

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def backend_for(offline_config: Callable[..., Any], start_backend: Callable[..., Any], litemedsam: Any,
                chelsea: np.ndarray, tmp_path: Path) -> tuple[Callable[[], Any], Path, Path]:
    """``(start, document root, store root)``: ``start()`` runs a backend (a new one per call, like a restarted
    process: empty memory cache, same store) on a private cache."""
    config = offline_config(litemedsam, cache={"dir": str(tmp_path / "cache")})
    root = config.storage.root
    save_image(chelsea, root / "cat.jpg")
    save_image(chelsea, root / "lit%2e%2e.jpg")
    return (lambda: start_backend(config, model=litemedsam)), root, config.embeddings_dir


@pytest.fixture
def served(backend_for: tuple[Callable[[], Any], Path, Path]) -> tuple[Any, Path, Path]:
    start, root, store_root = backend_for
    return start(), root, store_root


def _click(image: str = "cat.jpg", **overrides: Any) -> dict[str, Any]:
    item = box_context(CAT_BOX, SIZE)
    item.update(overrides)
    return predict_body(f"/data/local-files/?d={image}", [item])


def _entry(store_root: Path, image: Path) -> Path:
    return next(store_root.rglob(f"{file_sha256(image)}.json"))


@pytest.mark.parametrize("damage", ["random_bytes", "size_0x0", "size_huge", "nan"])
def test_damaged_store_entry_is_encoded_again_not_a_500(
    backend_for: tuple[Callable[[], Any], Path, Path], damage: str
) -> None:
    start, root, store_root = backend_for
    first = Connection(start().url)
    assert first.post(_click())[0] == 200
    first.close()
    entry = _entry(store_root, root / "cat.jpg")
    if damage == "random_bytes":
        entry.write_bytes(np.random.default_rng(2).integers(0, 256, 200, dtype=np.uint8).tobytes())
    elif damage == "nan":
        npy = entry.with_suffix(".npy")
        np.save(npy, np.full_like(np.load(npy), np.nan))
    else:
        meta = json.loads(entry.read_text())
        meta["original_size"] = [0, 0] if damage == "size_0x0" else [100000, 100000]
        entry.write_text(json.dumps(meta))
    server = start()  # a restarted backend: the damaged entry is read from disk
    connection = Connection(server.url)
    provider = server.app.state.backend.provider
    encodes = provider.encodes
    rss_before = psutil.Process().memory_info().rss
    status, answer = connection.post(_click())
    assert status == 200, answer
    assert answer["results"][0]["result"], "the re-encoded embedding gives a mask"
    assert provider.encodes == encodes + 1
    assert psutil.Process().memory_info().rss - rss_before < 500 * 2**20  # no 10-gigapixel mask
    assert EmbeddingStore(store_root, max_bytes=1 << 30).get(file_sha256(root / "cat.jpg"),
                                                             provider.model_id) is not None
    assert connection.reused
    connection.close()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": {**box_context(CAT_BOX, SIZE)["value"], "x": 2**64}}, "result[0].value.x"),
        ({"value": {**box_context(CAT_BOX, SIZE)["value"], "y": 10**400}}, "result[0].value.y"),
        ({"original_width": 1e300}, "result[0].original_width"),
        ({"original_height": float("inf")}, "result[0].original_height"),
        ({"value": {**box_context(CAT_BOX, SIZE)["value"], "width": float("nan")}}, "result[0].value.width"),
        ({"value": {**box_context(CAT_BOX, SIZE)["value"], "height": "9"}}, "result[0].value.height"),
    ],
)
def test_out_of_range_numbers_are_422_naming_the_field_and_the_connection_lives(
    served: tuple[Any, Path, Path], overrides: dict[str, Any], field: str
) -> None:
    server, _root, _store = served
    connection = Connection(server.url)
    status, answer = connection.post(_click(**overrides))
    assert status == 422 and field in answer["error"], answer
    assert connection.post(_click())[0] == 200
    assert connection.reused
    connection.close()


def test_names_that_look_encoded_work_and_unknown_labels_are_refused(served: tuple[Any, Path, Path]) -> None:
    server, _root, _store = served
    connection = Connection(server.url)
    status, answer = connection.post(_click("lit%252e%252e.jpg"))  # the file lit%2e%2e.jpg, decoded once
    assert status == 200 and answer["results"][0]["result"], answer
    dinosaur = box_context(CAT_BOX, SIZE, label="dinosaur")
    status, answer = connection.post(predict_body("/data/local-files/?d=cat.jpg", [dinosaur]))
    assert status == 422 and "dinosaur" in answer["error"] and "labels" in answer["error"], answer
    status, answer = connection.post(b'{"tasks": ' + b"[" * 50000 + b"]" * 50000 + b"}")
    assert 400 <= status < 500 and set(answer) == {"error"}, answer  # the same shape as every other error
    assert connection.post(_click())[0] == 200 and connection.reused
    connection.close()


class _ExplodingStore(EmbeddingStore):
    """An exception no handler maps: a fault that cannot be caused with real inputs any more."""

    def get(self, image_sha256: str, model_id: str):  # type: ignore[override]
        raise RuntimeError("disk controller on fire")


def test_unexpected_exception_is_a_500_with_an_error_id_and_keeps_the_connection(
    offline_config: Callable[..., Any], start_backend: Callable[..., Any], litemedsam: Any, chelsea: np.ndarray,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    config = offline_config(litemedsam, cache={"dir": str(tmp_path / "cache")})
    save_image(chelsea, config.storage.root / "cat.jpg")
    server = start_backend(config, model=litemedsam, store=_ExplodingStore(tmp_path / "s", max_bytes=1 << 30))
    connection = Connection(server.url)
    status, answer = connection.post(_click())
    assert status == 500 and answer["error"].startswith("internal error "), answer
    error_id = answer["error"].split()[2]
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)
    connection.http.request("GET", "/health")
    assert connection.http.getresponse().status == 200 and connection.http.sock is connection._socket
    connection.close()


def _fuzz_item(rng: random.Random) -> Any:
    """One generated context item: a box or keypoint with one or more fields mangled."""
    item = box_context(CAT_BOX, SIZE) if rng.random() < 0.5 else {
        "type": "keypointlabels", "from_name": "keypoint", "to_name": "image", "origin": "manual",
        "original_width": SIZE[1], "original_height": SIZE[0], "is_positive": True,
        "value": {"x": 50.0, "y": 50.0, "width": 0.5, "keypointlabels": ["cat"]},
    }
    weird: list[Any] = [2**64, -(2**63), 10**400, 1e300, -1e300, float("inf"), float("nan"), 0, -1, 1e-320, "12",
                        "", None, True, [], {}, [1, 2], {"a": 1}, "x" * 10000, json.loads("[" * 300 + "]" * 300)]
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(["value", "value", "item", "type", "label", "whole"])
        if target == "value":
            item["value"][rng.choice(["x", "y", "width", "height", "rotation"])] = rng.choice(weird)
        elif target == "item":
            item[rng.choice(["original_width", "original_height", "image_rotation", "origin",
                             "is_positive"])] = rng.choice(weird)
        elif target == "type":
            item["type"] = rng.choice(["rectanglelabels", "keypointlabels", "polygonlabels", 7, None])
        elif target == "label":
            key = "rectanglelabels" if "rectanglelabels" in item["value"] else "keypointlabels"
            item["value"][key] = rng.choice([["dinosaur"], [], "cat", [None], [["cat"]], ["cat", "person"]])
        else:
            return rng.choice(weird)
    return item


def test_fuzzed_contexts_never_get_a_5xx_and_the_connection_keeps_working(served: tuple[Any, Path, Path]) -> None:
    server, _root, _store = served
    rng = random.Random(12)
    connection = Connection(server.url)
    assert connection.post(_click())[0] == 200  # encode before measuring memory
    process = psutil.Process()
    rss_start = process.memory_info().rss
    statuses: dict[int, int] = {}
    for index in range(300):
        count = rng.choice([1, 1, 2, 3, 50, 1200])
        body = predict_body("/data/local-files/?d=cat.jpg", [_fuzz_item(rng) for _ in range(count)])
        status, answer = connection.post(body)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (index, answer)
        if index % 25 == 0:
            assert connection.post(_click())[0] == 200, index
    assert connection.post(_click())[0] == 200
    assert connection.reused
    assert 422 in statuses and len(statuses) >= 2, statuses
    assert process.memory_info().rss - rss_start < 300 * 2**20
    connection.close()
