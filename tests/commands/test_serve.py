"""``batchlabel serve`` as a process: binds, reports the loaded model, refuses a busy port, stops gracefully."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, port: int) -> Path:
    (tmp_path / "root").mkdir(exist_ok=True)
    config = {
        "storage": {"root": "root"},
        "label_studio": {"url": None, "labels": ["cat"]},
        "model": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu"},
        "cache": {"dir": "cache", "max_gb": 1},
        "serve": {"host": "127.0.0.1", "port": port},
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_binds_answers_refuses_a_busy_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    from batchlabel.serve.runner import bind_socket

    probe = bind_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    config = write_config(tmp_path, port)
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "batchlabel", "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, (tmp_path / "serve.log").read_text()
        assert health["status"] == "UP" and health["model_loaded"] and health["model_id"].startswith("litemedsam@")

        busy = subprocess.run([sys.executable, "-m", "batchlabel", "serve", str(config)], capture_output=True,
                              text=True, timeout=120)
        assert busy.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "backend stopped" in text
    assert "Traceback" not in text
