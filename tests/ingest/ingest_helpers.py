"""Helpers shared by the ingestion tests: small real images, YAML configs for the CLI, Label Studio queries."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from batchlabel.config import Config

BATCHLABEL = str(Path(sys.executable).with_name("batchlabel"))


def sample_images(count: int, *, side: int = 96) -> list[np.ndarray]:
    """``count`` distinct small HWC uint8 RGB images made from skimage's sample pictures."""
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    images = []
    for index in range(count):
        base = sources[index % len(sources)]
        shift = (index // len(sources)) * 7
        crop = base[shift:, shift:][:: max(1, base.shape[0] // side), :: max(1, base.shape[1] // side)]
        images.append(np.ascontiguousarray(crop[:side, :side]))
    return images


def write_png(path: Path, rgb: np.ndarray) -> str:
    """Write a PNG; returns the sha256 of its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_yaml_config(config: Config, path: Path) -> Path:
    data = config.model_dump(mode="json", exclude={"source"})
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHLABEL, *args], capture_output=True, text=True, timeout=timeout_s,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})


def project_tasks(ls: Any, title: str) -> list[dict]:
    """All tasks (with predictions) of the project titled ``title`` ([] when it does not exist)."""
    from batchlabel.sync.client import find_project, iter_tasks

    project = find_project(ls, title)
    return [] if project is None else list(iter_tasks(ls, project.id))


def wait_for(condition: Callable[[], Any], *, timeout_s: float, poll_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(poll_s)


def sidecar(path: Path, boxes: list[tuple[str, list[float]]]) -> None:
    """Write ``<image>.json`` with ``[{"label", "xyxy"}]`` boxes."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".json").write_text(json.dumps([{"label": name, "xyxy": box} for name, box in boxes]))
