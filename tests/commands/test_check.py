"""``batchlabel check`` opens the files it vouches for (issue 21): ``model.checkpoint`` given as a file (item 12) and
``preannotate.detector.model`` (item 14: a missing or corrupt ``.pt``, a SAM 3 folder, a hub id offline). The Label
Studio part of ``check`` is covered in tests/test_cli.py; here the config names the embedded one (no server needed)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from batchlabel.commands.check import CheckResult, run_checks
from batchlabel.config import load_config
from tests.ingest.ingest_helpers import run_cli


def _config_file(tmp_path: Path, *, model: dict[str, Any] | None = None, detector: str | None = None) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    raw: dict[str, Any] = {
        "storage": {"root": str(tmp_path / "images")},
        "label_studio": {"labels": ["cat"]},
        "model": {"name": "litemedsam", "device": "cpu", **(model or {})},
        "preannotate": {"mode": "boxes"} if detector is None else {"mode": "detect", "detector": {"model": detector}},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _findings(path: Path, topic: str) -> list[CheckResult]:
    return [finding for finding in run_checks(load_config(path)) if finding.topic == topic]


def test_check_opens_model_checkpoint(tmp_path: Path) -> None:
    """Item 12: random bytes named as model.checkpoint passed `check` ("found"); now it is opened as encode would."""
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(bytes(range(256)) * 20)
    [finding] = _findings(_config_file(tmp_path, model={"checkpoint": str(bogus)}), "model.checkpoint")
    assert finding.level == "FAIL" and finding.message.startswith(f"{bogus}: model.checkpoint is not a readable")
    from batchlabel.infer.model_registry import MODEL_SPECS
    from batchlabel.infer.weights import resolve_checkpoint

    real = resolve_checkpoint(MODEL_SPECS["litemedsam"], "auto", weights_dir=None)
    [finding] = _findings(_config_file(tmp_path, model={"checkpoint": str(real)}), "model.checkpoint")
    assert finding.level == "ok" and "keys and shapes fit" in finding.message


def test_check_opens_the_ultralytics_detector_file(tmp_path: Path) -> None:
    """Item 14: a missing or corrupt detector .pt passed `check`, then `run` failed. Each is a FAIL naming the file; a
    PyTorch archive passes (Ultralytics itself is not imported by `check`)."""
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    foreign_zip = tmp_path / "archive.pt"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("readme.txt", "no pickle")
    cases = {
        tmp_path / "missing.pt": "file not found",
        text: "is not a PyTorch checkpoint",
        foreign_zip: "a zip archive but not a PyTorch checkpoint (no data.pkl)",
        tmp_path: "is not a SAM 3 model directory",  # kind auto: a folder is SAM 3's, and it has no config.json
    }
    for path, fragment in cases.items():
        [finding] = _findings(_config_file(tmp_path, detector=str(path)), "preannotate.detector.model")
        assert finding.level == "FAIL" and finding.message.startswith(f"{path}: ") and fragment in finding.message
    archive_pt = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, archive_pt)
    pytest.importorskip("ultralytics", reason="the optional ultralytics extra is not installed")
    [finding] = _findings(_config_file(tmp_path, detector=str(archive_pt)), "preannotate.detector.model")
    assert finding.level == "ok", finding


def test_check_and_encode_with_an_unreachable_hub_id_fail_fast_with_the_offline_hint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items 11 and 14: a hub id as preannotate.detector.model (SAM 3) with the hub unreachable and nothing cached was
    150 s of hub retries with no batchlabel message. The hub endpoint is a closed loopback port here (HF_ENDPOINT) and
    the Hugging Face cache an empty folder (HF_HOME): `check` fails the finding and `encode` exits 2, both with the
    offline hint."""
    pytest.importorskip("transformers", reason="SAM 3 runs on transformers")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    from PIL import Image

    config = _config_file(tmp_path, detector="facebook/sam3")
    Image.new("RGB", (32, 24), (200, 30, 30)).save(tmp_path / "images" / "red.png")
    checked = run_cli("check", str(config), timeout_s=120)
    assert checked.returncode == 1
    [line] = [line for line in checked.stdout.splitlines() if "preannotate.detector.model" in line]
    assert line.startswith("[FAIL]") and "facebook/sam3 is not in the local Hugging Face cache" in line
    assert f"{endpoint}/api/models/facebook/sam3 unreachable" in line and "huggingface-cli download" in line
    encoded = run_cli("encode", str(config), timeout_s=120)
    assert encoded.returncode == 2, encoded.stderr
    assert "preannotate.detector: cannot download preannotate.detector.model facebook/sam3" in encoded.stderr
    assert "huggingface-cli download facebook/sam3" in encoded.stderr and "Traceback" not in encoded.stderr
