"""``batchlabel report`` errors a user can act on: a file that is not an export, a negative count (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from batchlabel.cli import main


def _config(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp_path / "root")},
        "label_studio": {"url": "http://127.0.0.1:9", "labels": ["cat"]},
        "cache": {"dir": str(tmp_path / "cache")},
    }))
    return path


def test_not_an_export_and_bad_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    broken = tmp_path / "export.json"
    broken.write_text('{"not": "a list"}')
    assert main(["report", str(config), "--from-export", str(broken)]) == 2
    assert f"{broken}: not a Label Studio JSON export" in capsys.readouterr().err
    assert main(["report", str(config), "--from-export", str(tmp_path / "missing.json")]) == 2
    assert "export file not found" in capsys.readouterr().err
    assert main(["report", str(config), "--from-export", str(broken), "--uncertain", "-1"]) == 2
    assert "--uncertain: expected a count >= 0" in capsys.readouterr().err
    assert main(["report", str(config), "--from-export", str(broken), "--uncertain-tab"]) == 2


def test_an_empty_export_gives_an_empty_report_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    config = _config(tmp_path)
    export = tmp_path / "export.json"
    export.write_text("[]")
    out = tmp_path / "out"
    assert main(["report", str(config), "--from-export", str(export), "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == {"total": 0, "reviewed": 0, "unreviewed": 0, "with_predictions": 0,
                               "predictions_ids_only": 0}
    assert report["labels"] == {} and report["time_saved_estimate"]["saved_fraction"] is None
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.png"]
