"""Previews: overlays drawn where the masks are, a contact sheet; the CLI's build-dataset and preview commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from batchlabel.cli import main
from batchlabel.dataset.builder import BuildOptions, build_dataset
from batchlabel.dataset.preview import category_colour, render_previews
from tests.dataset import helpers

LABELS = ["cat", "person"]


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "root"
    mask = np.zeros((60, 80), bool)
    mask[10:40, 20:60] = True
    tasks = []
    for index in range(3):
        helpers.write_image(root, f"a/{index}.png", np.full((60, 80, 3), 200 - index, np.uint8))
        result = [helpers.brush(mask, "cat"), helpers.rectangle((1.0, 45.0, 15.0, 58.0), "person", (60, 80))]
        tasks.append(helpers.task(index + 1, f"a/{index}.png", [helpers.annotation(result, index + 10)]))
    export = helpers.write_export(tmp_path / "export.json", tasks)
    out = tmp_path / "dataset"
    return root, export, out


def test_overlays_colour_the_mask_pixels_and_make_a_contact_sheet(built: tuple[Path, Path, Path]) -> None:
    from PIL import Image

    root, export, out = built
    build_dataset(helpers.offline_config(root, out, LABELS), BuildOptions(out=out, from_export=export))
    paths = render_previews(out, limit=2)
    assert [p.name for p in paths] == ["1.png", "2.png", "contact_sheet.png"]
    overlay = np.asarray(Image.open(paths[0]).convert("RGB")).astype(int)
    inside, outside = overlay[30, 40], overlay[5, 75]
    assert list(outside) == [200, 200, 200]
    expected = 200 * 0.55 + np.array(category_colour(1)) * 0.45
    assert np.abs(inside - expected).max() <= 1
    assert overlay[45, 8].tolist() != [200, 200, 200]  # the person box outline / label
    with Image.open(paths[-1]) as sheet:
        assert sheet.size == (2 * 256, 1 * 256)


def test_cli_build_dataset_json_report_and_preview(built: tuple[Path, Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, export, out = built
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({"storage": {"root": str(root)}, "label_studio": {"labels": LABELS},
                                           "dataset": {"out": str(out), "template": "rtmdet-ins_s"}}))
    code = main(["build-dataset", str(config_path), "--from-export", str(export), "--json", "--preview", "2",
                 "--val-fraction", "0.34", "--seed", "9"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["images"] == 3 and report["counts"]["objects"] == 6
    assert report["counts"]["val_images"] == 1
    assert report["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "person"}]
    assert report["findings"] == {"box_only": 3}
    assert (out / "rtmdet-ins_s.py").is_file() and (out / "previews" / "contact_sheet.png").is_file()

    code = main(["build-dataset", str(config_path), "--from-export", str(export), "--if-changed", "--val-fraction",
                 "0.34", "--seed", "9"])
    assert code == 0 and "up to date" in capsys.readouterr().out

    code = main(["build-dataset", str(config_path), "--from-export", str(export)])
    text = capsys.readouterr().out
    assert code == 0
    assert "      1 cat: " in text or "  1 cat: " in text
    assert "--mask-boxes" in text

    assert main(["preview", str(config_path), str(out), "--limit", "1"]) == 0
    assert "2 preview images" in capsys.readouterr().out
    assert main(["build-dataset", str(config_path), "--from-export", str(tmp_path / "missing.json")]) == 2
    assert "export file not found" in capsys.readouterr().err
