"""Fixtures for the backend tests: models loaded once per session, configs, sample images, running backends."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from batchlabel.config import Config, ModelConfig, parse_config

#: A box around the cat of ``skimage.data.chelsea()`` (451 x 300), XYXY pixels.
CAT_BOX = (20.0, 0.0, 400.0, 299.0)


@pytest.fixture(scope="session")
def litemedsam() -> Any:
    """LiteMedSAM with its real weights (box prompts only), on the CPU."""
    from batchlabel.infer.models import load_model

    return load_model(ModelConfig(name="litemedsam", checkpoint="auto", device="cpu"))


@pytest.fixture(scope="session")
def random_mobile_sam() -> Any:
    """MobileSAM with random weights (point prompts work, masks are meaningless but deterministic)."""
    from batchlabel.infer.models import load_model

    return load_model(ModelConfig(name="mobile_sam", checkpoint="random", allow_random_weights=True, device="cpu"))


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.chelsea())


def model_section(model: Any) -> dict[str, Any]:
    if model.checkpoint_path is None:
        return {"name": model.spec.name, "checkpoint": "random", "allow_random_weights": True, "device": "cpu"}
    return {"name": model.spec.name, "checkpoint": "auto", "device": "cpu"}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir shared by the session's in-process tests: the store is content addressed, so sharing it only
    saves encodes. Tests that count encodes use an image no other test uses."""
    return tmp_path_factory.mktemp("serve-cache")


@pytest.fixture
def offline_config(tmp_path: Path, shared_cache: Path) -> Callable[..., Config]:
    """``offline_config(model, serve={...}, ...)``: a Config with no Label Studio (for in-process app tests)."""

    def make(model: Any, **sections: dict[str, Any]) -> Config:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        raw: dict[str, Any] = {
            "storage": {"root": str(root)},
            "label_studio": {"url": None, "api_key": None, "labels": ["cat", "person"]},
            "model": model_section(model),
            "preannotate": {"mode": "none", "default_label": "cat", "outputs": ["brush"]},
            "cache": {"dir": str(shared_cache), "max_gb": 1},
        }
        for key, value in sections.items():
            raw[key] = {**raw.get(key, {}), **value}
        return parse_config(raw, source=str(tmp_path / "serve-test.yaml"), base_dir=tmp_path)

    return make


def save_image(rgb: np.ndarray, path: Path, *, orientation: int | None = None) -> Path:
    """Write ``rgb`` as a JPEG; with ``orientation`` the pixels are stored so that EXIF orientation shows ``rgb``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    if orientation == 6:  # viewer rotates 90 degrees clockwise: store the pixels rotated counter-clockwise
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    image.save(path, quality=95, exif=exif.tobytes())
    return path


def box_context(box: tuple[float, float, float, float], size: tuple[int, int], *, label: str = "cat",
                origin: str | None = "manual") -> dict[str, Any]:
    """A smart-rectangle context item for ``box`` XYXY px on an image of ``size`` (height, width)."""
    h, w = size
    x1, y1, x2, y2 = box
    item = {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": w,
            "original_height": h, "image_rotation": 0,
            "value": {"x": 100 * x1 / w, "y": 100 * y1 / h, "width": 100 * (x2 - x1) / w,
                      "height": 100 * (y2 - y1) / h, "rotation": 0, "rectanglelabels": [label]}}
    if origin is not None:
        item["origin"] = origin
    return item


def point_context(x: float, y: float, size: tuple[int, int], *, positive: bool = True, label: str = "cat",
                  origin: str | None = "manual") -> dict[str, Any]:
    """A smart-keypoint context item at ``(x, y)`` px on an image of ``size`` (height, width)."""
    h, w = size
    item = {"type": "keypointlabels", "from_name": "keypoint", "to_name": "image", "original_width": w,
            "original_height": h, "image_rotation": 0, "is_positive": positive,
            "value": {"x": 100 * x / w, "y": 100 * y / h, "width": 0.5, "keypointlabels": [label]}}
    if origin is not None:
        item["origin"] = origin
    return item


def predict_body(image_url: str, context: list[dict[str, Any]] | None, *, label_config: str | None = None,
                 task_id: int = 1) -> dict[str, Any]:
    """A ``/predict`` body as Label Studio sends it (interactive when ``context`` is given)."""
    from batchlabel.sync.label_config import generate_label_config

    return {
        "tasks": [{"id": task_id, "data": {"image": image_url}, "annotations": [], "predictions": []}],
        "project": "1.1700000000",
        "label_config": label_config or generate_label_config(["cat", "person"]),
        "params": {"login": None, "password": None, "context": None if context is None else {"result": context}},
    }


def brush_masks(result: list[dict[str, Any]]) -> list[np.ndarray]:
    """Decode every brush item of a result list to a (H, W) bool mask."""
    from batchlabel.sync.results import parse_result_mask

    return [parse_result_mask(item)[1] for item in result if item["type"] == "brushlabels"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def unique_name() -> str:
    return uuid.uuid4().hex[:10]


def write_sidecar(image: Path, objects: list[dict[str, Any]]) -> None:
    image.with_name(image.name + ".json").write_text(json.dumps({"objects": objects}))


@pytest.fixture
def running_backends() -> Iterator[list[Any]]:
    """Background servers started by a test; stopped at its end."""
    servers: list[Any] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def start_backend(running_backends: list[Any]) -> Callable[..., Any]:
    """``start_backend(config, model=...) -> BackgroundServer`` on a free loopback port."""
    from batchlabel.serve.app import create_app
    from batchlabel.serve.runner import BackgroundServer, bind_socket

    def start(config: Config, *, model: Any = None, store: Any = None) -> Any:
        app = create_app(config, model=model, store=store)
        server = BackgroundServer(app, bind_socket("127.0.0.1", 0)).start()
        server.app = app
        running_backends.append(server)
        return server

    return start
