"""Shared fixtures: a real Label Studio server for the whole test session, and validated configs wired to it.

The server is :class:`batchlabel.sync.server.EmbeddedLabelStudio` (the same code ``batchlabel up`` uses), started from
a pre-migrated template data dir (built once per machine, ~45 s; then ~6 s per server).
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchlabel.config import Config, parse_config
from batchlabel.sync.server import TEMPLATE_CREDENTIALS, EmbeddedLabelStudio, ensure_template

log = logging.getLogger(__name__)

_SERVED: dict[str, Any] = {}


@dataclass
class LiveLabelStudio:
    """A running Label Studio: ``url``, legacy-token ``api_key``, SDK ``client``, local-files ``document_root``."""

    url: str
    api_key: str
    client: Any  # label_studio_sdk.client.LabelStudio
    document_root: Path
    server: EmbeddedLabelStudio

    @property
    def username(self) -> str:
        return self.server.credentials.username

    @property
    def password(self) -> str:
        return self.server.credentials.password

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        """(Re)start on the same port, data dir and document root."""
        self.server.start()
        self.url = self.server.url


def _start_server(base: Path) -> LiveLabelStudio:
    from label_studio_sdk.client import LabelStudio

    template = ensure_template()
    server = EmbeddedLabelStudio(
        data_dir=base / "ls-data", document_root=base / "document-root",
        credentials=TEMPLATE_CREDENTIALS, template_dir=template,
    )
    server.start()
    server.port = server._bound_port  # keep the port across restarts (outage tests)
    client = LabelStudio(base_url=server.url, api_key=TEMPLATE_CREDENTIALS.api_key)
    return LiveLabelStudio(server.url, TEMPLATE_CREDENTIALS.api_key, client, server.document_root, server)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLabelStudio]:
    """A live Label Studio shared by the session. Put test images in a unique subfolder of ``document_root``."""
    live = _start_server(tmp_path_factory.mktemp("label-studio"))
    version = httpx.get(f"{live.url}/api/version", headers={"Authorization": f"Token {live.api_key}"}, timeout=10)
    _SERVED["version"] = version.json().get("release", "?") if version.status_code == 200 else "?"
    _SERVED["url"] = live.url
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def label_studio_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], LiveLabelStudio]]:
    """Start private Label Studio servers a test may stop and restart; all are stopped at the end of the test."""
    started: list[LiveLabelStudio] = []

    def start() -> LiveLabelStudio:
        live = _start_server(tmp_path_factory.mktemp("private-label-studio"))
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_dict_for(live: LiveLabelStudio, tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A raw config dict wired to ``live``: unique document-root subfolder and project, cache under ``tmp_path``."""
    name = uuid.uuid4().hex[:10]
    root = live.document_root / f"t-{name}"
    root.mkdir(parents=True, exist_ok=True)
    base = {
        "storage": {"root": str(root), "stable_s": 0.2},
        "label_studio": {"url": live.url, "api_key": live.api_key, "project": f"test-{name}",
                         "labels": ["cat", "person"]},
        "model": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu", "batch_size": 4},
        "preannotate": {"mode": "none", "default_label": "cat"},
        "cache": {"dir": str(tmp_path / "cache"), "max_gb": 1},
        "serve": {"host": "127.0.0.1", "port": 8003},
        "dataset": {"out": str(tmp_path / "dataset")},
    }
    return _merge(base, sections)


@pytest.fixture
def make_config(label_studio: LiveLabelStudio, tmp_path: Path) -> Callable[..., Config]:
    """``make_config(model={...}, preannotate={...})``: a validated Config wired to the session's Label Studio."""

    def make(**sections: dict[str, Any]) -> Config:
        raw = config_dict_for(label_studio, tmp_path, **sections)
        return parse_config(raw, source=str(tmp_path / "test-config.yaml"), base_dir=tmp_path)

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SERVED:
        terminalreporter.write_line(
            f"Label Studio {_SERVED.get('version')} (real server, started by the harness) served these tests at "
            f"{_SERVED.get('url')}"
        )
