"""Importing Ultralytics leaves the rest of the process alone: Pillow's ``Image.open`` is Pillow's again (Ultralytics
replaces it with a wrapper that pip-installs ``pi-heif`` on any unidentified file), so batchlabel's loader still
says what a bad file is, and nothing is installed at run time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from batchlabel.infer.images import ImageLoadError, load_image_bytes

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                                reason="the batchlabel[ultralytics] extra is not installed (make install adds it)")


def test_importing_ultralytics_keeps_pillow_open_and_bad_file_messages(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from batchlabel.annotate.detectors.ultralytics import import_yolo

    for name in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_VERBOSE", "YOLO_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    pillow_open = Image.open
    yolo = import_yolo(tmp_path / "ultralytics-settings")

    assert yolo.__name__ == "YOLO"
    assert Image.open is pillow_open
    with pytest.raises(ImageLoadError) as raised:
        load_image_bytes(b"these are my notes, not a picture\n", name="notes.jpg")
    assert "not a recognised image format" in str(raised.value)
    assert "pi_heif" not in str(raised.value)
