"""``batchlabel encode`` end to end through the CLI entry point: store, journal, exit codes, JSON summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from batchlabel.cli import main
from batchlabel.commands.encode import find_images
from batchlabel.config import load_config
from tests.infer.image_zoo import make_image_zoo


def _config(tmp_path: Path, root: Path) -> Path:
    raw = {
        "storage": {"root": str(root)},
        "label_studio": {"labels": ["cat"]},
        "model": {"name": "litemedsam", "device": "cpu", "backend": "torch", "batch_size": 4},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_find_images_globs(tmp_path: Path) -> None:
    for rel in ["a.jpg", "sub/B.JPG", "sub/deep/c.png", "skip/d.jpg", ".hidden/e.jpg", "f.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = find_images(tmp_path, ["**/*.jpg", "**/*.png"], ["skip/**"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "sub/B.JPG", "sub/deep/c.png"]


@pytest.mark.slow
def test_encode_command_reports_failures_and_reuses_the_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    zoo = make_image_zoo(tmp_path / "root")
    for name in ["rotated.jpg", "gray16.png", "cmyk.jpg", "corrupt.png", "bomb.png"]:
        (zoo.root / name).unlink()  # keep it short: one good image, three bad ones
    (zoo.root / "sub").mkdir()
    (zoo.root / "cat.jpg").rename(zoo.root / "sub" / "cat.jpg")
    config_path = _config(tmp_path, zoo.root)

    assert main(["encode", str(config_path), "--json"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["images"], summary["encoded"], summary["cached"], summary["failed"]) == (4, 1, 0, 3)
    assert summary["model_id"] == "litemedsam@79d8c9dc" and set(summary["stage_s"]) == {"load", "encode", "store"}
    reasons = {f["path"]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "truncated.jpg"}
    for path, reason in reasons.items():
        assert f"{path}: {reason}" in err.splitlines()

    from batchlabel.ingest.journal import Journal

    config = load_config(config_path)
    with Journal(config.journal_path) as journal:
        failed = {record.rel_path for record in journal.failures()}
        assert failed == {"empty.jpg", "notes.jpg", "truncated.jpg"}
        assert journal.get("sub/cat.jpg").stage == "encoded"

    assert main(["encode", str(config_path)]) == 1
    out, _ = capsys.readouterr()
    assert out.startswith("encoded 0, already stored 1, failed 3 of 4 images")
    (zoo.root / "empty.jpg").unlink()
    (zoo.root / "notes.jpg").unlink()
    (zoo.root / "truncated.jpg").unlink()
    assert main(["encode", str(config_path)]) == 0


def test_encode_names_a_checkpoint_that_is_not_one_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Item 12 of issue 21: model.checkpoint pointing at random bytes ended encode in a traceback."""
    root = tmp_path / "root"
    root.mkdir()
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(bytes(range(256)) * 20)
    config_path = _config(tmp_path, root)
    raw = yaml.safe_load(config_path.read_text())
    raw["model"]["checkpoint"] = str(bogus)
    config_path.write_text(yaml.safe_dump(raw))
    assert main(["encode", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bogus}: model.checkpoint is not a readable PyTorch checkpoint" in err and "Traceback" not in err


def test_encode_ray_at_a_closed_port_exits_2_naming_the_address(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Item 10 of issue 21: `--ray 127.0.0.1:<port nobody listens on>` was 165 s of silent Ray retries; the head's port
    is probed first (a real closed loopback port here)."""
    import socket

    pytest.importorskip("ray", reason="the optional Ray extra is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"  # closed again when the block ends: nothing listens there
    root = tmp_path / "root"
    root.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 30, 30)).save(root / "red.png")  # with no image, Ray is never joined
    assert main(["encode", str(_config(tmp_path, root)), "--ray", address]) == 2
    err = capsys.readouterr().err
    assert f"cannot join the Ray cluster at {address}: nothing answers on {address}" in err
    assert "ray start --head" in err
