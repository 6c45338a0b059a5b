"""The command line as a user meets it: help, exit codes, and `check` against a real Label Studio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from batchlabel.cli import SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[1]
EXPECTED_COMMANDS = {"watch", "run", "serve", "build-dataset", "status", "encode", "up", "check"}


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run([sys.executable, "-m", "batchlabel", "--help"], capture_output=True, text=True, check=True)
    for name in EXPECTED_COMMANDS:
        assert f"    {name}" in result.stdout
    assert {command.name for command in SUBCOMMANDS} >= EXPECTED_COMMANDS


@pytest.mark.parametrize("name", sorted(EXPECTED_COMMANDS))
def test_each_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "CONFIG" in capsys.readouterr().out


def test_config_error_exits_2_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"storage": {"root": "x"}, "label_studio": {"labels": ["cat"]},
                                    "model": {"batch_size": "eight"}}))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: model.batch_size: expected a positive integer, got 'eight'" in err


@pytest.mark.labelstudio
def test_check_reports_a_healthy_setup(label_studio, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import config_dict_for

    raw = config_dict_for(label_studio, tmp_path)
    (Path(raw["storage"]["root"]) / "a.jpg").write_bytes(b"not really")
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "is reachable and healthy" in out
    assert "label_studio.api_key: accepted" in out
    assert "1 image file(s)" in out
    assert "all checks passed" in out


@pytest.mark.labelstudio
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"storage": {"root": "/nonexistent/batchlabel-root"}}, "storage.root: /nonexistent/batchlabel-root does not"),
        ({"label_studio": {"url": "http://127.0.0.1:9"}}, "label_studio.url: cannot reach http://127.0.0.1:9"),
        ({"label_studio": {"api_key": "wrong-token"}}, "label_studio.api_key: "),
    ],
)
def test_check_fails_clearly(label_studio, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             change: dict, expected: str) -> None:
    from tests.conftest import config_dict_for

    raw = config_dict_for(label_studio, tmp_path, **change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert expected in out
    assert "[FAIL]" in out


@pytest.mark.parametrize(("argv", "ray", "actors"), [
    (["encode", "c.yaml"], None, None),
    (["encode", "c.yaml", "--ray"], "local", None),
    (["run", "c.yaml", "--ray", "10.0.0.1:6379", "--ray-actors", "4"], "10.0.0.1:6379", 4),
    (["run", "c.yaml", "--ray", "auto"], "auto", None),
])
def test_ray_options_of_encode_and_run(argv: list[str], ray: str | None, actors: int | None) -> None:
    from batchlabel.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.ray, args.ray_actors) == (ray, actors)


def test_encode_ray_refuses_a_non_positive_actor_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"not read: the count is checked first")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "images")},
                                      "label_studio": {"labels": ["cat"]}, "cache": {"dir": str(tmp_path / "c")}}))
    assert main(["encode", str(config), "--ray", "--ray-actors", "0"]) == 2
    assert "--ray-actors must be at least 1, got 0" in capsys.readouterr().err
