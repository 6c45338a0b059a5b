"""build-dataset's options: --format (repeatable) overrides dataset.formats; the default is the config's."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.cli import build_parser
from batchlabel.commands.dataset import options_from_args
from tests.dataset import helpers


@pytest.mark.parametrize(
    ("config_formats", "argv", "expected"),
    [
        (None, [], ("coco",)),
        (["coco", "voc"], [], ("coco", "voc")),
        (["coco", "voc"], ["--format", "yolo", "--format", "coco-polygon", "--format", "yolo"],
         ("yolo", "coco-polygon")),
    ],
)
def test_format_flags_override_the_config(tmp_path: Path, config_formats: list[str] | None, argv: list[str],
                                          expected: tuple[str, ...]) -> None:
    extra = {"formats": config_formats, "polygon_tolerance_px": 0.5} if config_formats else {}
    config = helpers.offline_config(tmp_path, tmp_path / "out", ["cat"], **extra)
    args = build_parser().parse_args(["build-dataset", "config.yaml", *argv])
    options = options_from_args(config, args)
    assert options.formats == expected
    assert options.polygon_tolerance_px == (0.5 if config_formats else 0.25)


def test_an_unknown_format_flag_is_a_usage_error_listing_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["build-dataset", "config.yaml", "--format", "yolov8"])
    assert exit_info.value.code == 2
    assert "choose from 'coco', 'coco-polygon', 'yolo', 'voc'" in capsys.readouterr().err
