"""Run ``batchlabel up`` as a user would (a subprocess), on an embedded Label Studio seeded from the test template."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from batchlabel.samples import write_samples
from batchlabel.sync.server import TEMPLATE_CREDENTIALS, ensure_template, find_free_port

OPEN_LINE = re.compile(r"^Open (http://127\.0\.0\.1:\d+)/projects/(\d+)/data")


@dataclass
class UpProcess:
    """A running ``batchlabel up``: its Label Studio URL, project id, and everything it printed."""

    process: subprocess.Popen[str]
    config_path: Path
    url: str = ""
    project_id: int = 0
    output: deque[str] = field(default_factory=lambda: deque(maxlen=2000))

    def text(self) -> str:
        return "\n".join(self.output)

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl-C
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def write_up_config(base: Path) -> Path:
    """The offline demo setup in ``base``: sample images + sidecar boxes, embedded Label Studio (template-seeded)."""
    root = base / "root"
    write_samples(root)
    data_dir = base / "cache" / "label-studio"
    if not data_dir.exists():
        shutil.copytree(ensure_template(), data_dir)  # credentials: TEMPLATE_CREDENTIALS, no 45 s migration
    config = {
        "storage": {"root": str(root), "stable_s": 0.3},
        "label_studio": {"url": None, "project": "cats e2e", "labels": ["cat", "person"],
                         "embedded": {"port": find_free_port(), "username": TEMPLATE_CREDENTIALS.username}},
        "model": {"name": "litemedsam", "checkpoint": "auto", "device": "cpu", "batch_size": 4},
        "preannotate": {"mode": "boxes", "boxes_from": ["tasks", "sidecar"], "default_label": "cat",
                        "outputs": ["brush", "rectangle"], "min_score": 0.0},
        "cache": {"dir": str(base / "cache"), "max_gb": 1},
        "serve": {"host": "127.0.0.1", "port": find_free_port()},
        "dataset": {"out": str(base / "dataset"), "val_fraction": 0.0},
    }
    path = base / "up.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_up(config_path: Path, *, timeout_s: float = 240.0) -> UpProcess:
    """Start ``batchlabel up CONFIG`` and wait for the line that prints the project URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LABEL_STUDIO_URL", None)
    env.pop("LABEL_STUDIO_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "batchlabel", "up", str(config_path)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env,
    )
    up = UpProcess(process, config_path)
    found = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.output.append(line.rstrip())
            match = OPEN_LINE.match(line)
            if match:
                up.url, up.project_id = match.group(1), int(match.group(2))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not found.wait(0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            up.stop()
            raise RuntimeError(f"batchlabel up did not come up (exit {process.returncode}):\n{up.text()}")
    return up
