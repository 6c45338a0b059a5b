"""``batchlabel report --from-export`` on exports and cache files an attacker (or an accident) shaped: two model
versions in the text output, prediction ids and labels of the wrong JSON type, labels that look like mathematics, a
garbled request-counts database. Real files, the real CLI; no server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from batchlabel.cli import main
from tests.dataset.helpers import annotation, rectangle, task, write_export, write_image

SIZE_HW = (96, 96)
CAT_BOX = (10.0, 10.0, 50.0, 60.0)


def _config(tmp_path: Path, labels: list[str]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp_path / "root")},
        "label_studio": {"url": "http://127.0.0.1:9", "labels": labels},
        "cache": {"dir": str(tmp_path / "cache")},
    }))
    return path


def _image(tmp_path: Path, rel_path: str) -> str:
    write_image(tmp_path / "root", rel_path, np.full((*SIZE_HW, 3), 120, np.uint8))
    return rel_path


def _prediction(prediction_id: Any, version: str, box: tuple[float, float, float, float], label: str = "cat",
                *, created_at: str = "2026-11-25T09:00:00Z") -> dict[str, Any]:
    return {"id": prediction_id, "model_version": version, "score": 0.5, "created_at": created_at,
            "result": [rectangle(box, label, SIZE_HW, result_id=f"r{prediction_id}")]}


def _reviewed_task(task_id: int, rel_path: str, predictions: list[dict[str, Any]], *, parent: Any,
                   lead_time: float, label: Any = "cat") -> dict[str, Any]:
    final = rectangle(CAT_BOX, "cat", SIZE_HW, result_id=f"a{task_id}")
    final["value"]["rectanglelabels"] = [label]
    reviewed = task(task_id, rel_path, [annotation([final], 100 + task_id, parent_prediction=parent,
                                                   lead_time=lead_time)])
    reviewed["predictions"] = predictions
    return reviewed


def _two_versions_export(tmp_path: Path) -> Path:
    """Task 1 reviewed from v1's prediction (accepted), task 2 reviewed from v2's (edited), both tasks carry both."""
    tasks = []
    for task_id, (parent_version, lead_time) in enumerate((("v1", 8.0), ("v2", 20.0)), start=1):
        rel = _image(tmp_path, f"img/{task_id}.png")
        predictions = [_prediction(10 * task_id + 1, "v1", CAT_BOX),
                       _prediction(10 * task_id + 2, "v2", (14.0, 10.0, 54.0, 60.0))]
        parent = 10 * task_id + (1 if parent_version == "v1" else 2)
        tasks.append(_reviewed_task(task_id, rel, predictions, parent=parent, lead_time=lead_time))
    return write_export(tmp_path / "export.json", tasks)


def test_text_report_with_two_model_versions_prints_every_column(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, ["cat"])
    export = _two_versions_export(tmp_path)
    assert main(["report", str(config), "--from-export", str(export)]) == 0
    text = capsys.readouterr().out
    assert "model version v1:" in text and "model version v2:" in text
    assert main(["report", str(config), "--from-export", str(export), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    overall = report["labels"]["cat"]
    versions = report["model_versions"]
    for scope in versions.values():  # per-version rows carry the overall row's keys
        assert set(scope["labels"]["cat"]) == set(overall)
    # lead time and final objects go to the version each annotation started from (parent_prediction)
    assert (versions["v1"]["labels"]["cat"]["median_lead_time_s"], versions["v1"]["labels"]["cat"]["final_objects"],
            versions["v2"]["labels"]["cat"]["median_lead_time_s"], versions["v2"]["labels"]["cat"]["final_objects"],
            overall["median_lead_time_s"]) == (8.0, 1, 20.0, 1, 14.0)
    # the counts stay each version's latest prediction against the annotation, on both tasks
    assert (versions["v1"]["labels"]["cat"]["accepted"], versions["v2"]["labels"]["cat"]["edited"]) == (2, 2)
    version_rows = [line.split() for line in text.splitlines() if line.startswith("  cat ")]
    # overall, v1, v2: seconds per object and requests per object (none recorded: "-")
    assert [row[-2:] for row in version_rows] == [["14.0", "-"], ["8.0", "-"], ["20.0", "-"]]


def _bad_prediction_id(reviewed: dict[str, Any], value: Any) -> None:
    reviewed["predictions"][0]["id"] = value


def _bad_embedded_id(reviewed: dict[str, Any], value: Any) -> None:
    reviewed["annotations"][0]["prediction"] = {**reviewed["predictions"].pop(0), "id": value}


def _bad_parent(reviewed: dict[str, Any], value: Any) -> None:
    reviewed["annotations"][0]["parent_prediction"] = value


def _label_in_a_list(reviewed: dict[str, Any], value: Any) -> None:
    reviewed["annotations"][0]["result"][0]["value"]["rectanglelabels"] = [value]


MALFORMED = {
    "prediction id": (_bad_prediction_id, "task 2: predictions[0].id must be a prediction id"),
    "embedded prediction id": (_bad_embedded_id, "task 2: annotation 102: prediction.id must be a prediction id"),
    "parent_prediction": (_bad_parent, "task 2: annotation 102: parent_prediction must be a prediction id"),
    "label": (_label_in_a_list, "task 2: annotation 102: result 0 (rectanglelabels, id a2): value.rectanglelabels "
                                "must be a non-empty list of label strings"),
}


@pytest.mark.parametrize("value", [["cat"], {"id": 21}], ids=["list", "object"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_an_unhashable_id_or_label_fails_that_task_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        case: str, value: Any) -> None:
    spoil, message = MALFORMED[case]
    config = _config(tmp_path, ["cat"])
    tasks = []
    for task_id in (1, 2, 3):
        rel = _image(tmp_path, f"img/{task_id}.png")
        tasks.append(_reviewed_task(task_id, rel, [_prediction(10 * task_id, "v1", CAT_BOX)], parent=10 * task_id,
                                    lead_time=5.0))
    spoil(tasks[1], value)
    export = write_export(tmp_path / "export.json", tasks)
    assert main(["report", str(config), "--from-export", str(export), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (failure,) = report["failures"]
    assert failure.startswith(message), failure
    assert report["tasks"]["total"] == 3
    assert report["labels"]["cat"]["accepted"] == 2  # tasks 1 and 3 are counted, nothing of task 2
    assert report["labels"]["cat"]["final_objects"] == 2 and report["time"]["annotations_with_lead_time"] == 2


def test_a_label_in_a_list_fails_that_task_of_build_dataset(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, ["cat"])
    tasks = [_reviewed_task(task_id, _image(tmp_path, f"img/{task_id}.png"), [], parent=None, lead_time=1.0)
             for task_id in (1, 2)]
    _label_in_a_list(tasks[1], ["cat"])
    export = write_export(tmp_path / "export.json", tasks)
    out = tmp_path / "dataset"
    assert main(["build-dataset", str(config), "--from-export", str(export), "--out", str(out), "--json"]) == 1
    built = json.loads(capsys.readouterr().out)
    assert built["counts"]["images"] == 1 and len(built["failures"]) == 1
    assert built["failures"][0].startswith(MALFORMED["label"][1])


def test_labels_that_look_like_mathematics_are_drawn_as_text(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    labels = [r"$\frac{a$", "$x^2$", "costs $5 and $6"]  # an invalid formula, a valid one, two dollar signs
    config = _config(tmp_path, labels)
    tasks = []
    for task_id, label in enumerate(labels, start=1):
        rel = _image(tmp_path, f"img/{task_id}.png")
        reviewed = _reviewed_task(task_id, rel, [_prediction(10 * task_id, "v1", CAT_BOX, label)], parent=10 * task_id,
                                  lead_time=3.0, label=label)
        tasks.append(reviewed)
    export = write_export(tmp_path / "export.json", tasks)
    out = tmp_path / "out"
    assert main(["report", str(config), "--from-export", str(export), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.png"]
    from PIL import Image

    with Image.open(out / "report.png") as chart:
        assert chart.format == "PNG" and chart.size[0] > 1000
    html = (out / "report.html").read_text()
    assert all(f"<td>{label}</td>" in html for label in labels)  # nothing to escape in HTML but the text itself
    assert json.loads((out / "report.json").read_text())["labels"][labels[0]]["accepted"] == 1


def _garbled_pages(path: Path) -> None:
    """A real counts database whose pages after the header are overwritten: SQLite opens it, reading fails."""
    from batchlabel.serve.request_counts import InteractiveRequestCounts

    counts = InteractiveRequestCounts(path.parent)
    for task_id in range(200):
        counts.record("1.1700000000", task_id, "cat")
    counts.close()
    data = bytearray(path.read_bytes())
    data[100:] = bytes(range(256)) * ((len(data) - 100) // 256) + bytes((len(data) - 100) % 256)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("garble", ["random bytes", "garbled pages"])
def test_a_garbled_request_counts_file_is_reported_without_counts(tmp_path: Path, garble: str,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from batchlabel.serve.request_counts import FILE_NAME

    config = _config(tmp_path, ["cat"])
    export = _two_versions_export(tmp_path)
    counts_file = tmp_path / "cache" / FILE_NAME
    counts_file.parent.mkdir(parents=True)
    if garble == "random bytes":
        counts_file.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    else:
        _garbled_pages(counts_file)
    before = counts_file.read_bytes()
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["report", str(config), "--from-export", str(export), "--out", str(out)]) == 0
    assert "model version v1:" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.png"]
    assert json.loads((out / "report.json").read_text())["labels"]["cat"]["requests_per_object"] is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(counts_file) in message and "without interactive request counts" in message
               for message in warnings), warnings
    assert counts_file.read_bytes() == before  # the report only reads: the evidence is left as it was


#: Other malformed fields that raised TypeError or ValueError (found by fuzzing each field of a task):
#: (path to the field, the JSON text put there, the start of the failure message).
OTHER_MALFORMED = {
    "predictions": (("predictions",), "5", "task 2: 'predictions' must be a list, got int"),
    "image_rotation": (("annotations", 0, "result", 0, "image_rotation"), '["x"]',
                       "task 2: annotation 102: result 0 (rectanglelabels, id a2): image_rotation must be a number"),
    "rotation": (("annotations", 0, "result", 0, "value", "rotation"), '"90deg"',
                 "task 2: annotation 102: result 0 (rectanglelabels, id a2): value.rotation must be a number"),
    "infinite rotation": (("annotations", 0, "result", 0, "value", "rotation"), '"-inf"',
                          "task 2: annotation 102: result 0 (rectanglelabels, id a2): value.rotation must be a number"),
}


@pytest.mark.parametrize("command", ["report", "build-dataset"])
@pytest.mark.parametrize("case", list(OTHER_MALFORMED))
def test_other_malformed_fields_fail_that_task_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    case: str, command: str) -> None:
    field, text, message = OTHER_MALFORMED[case]
    config = _config(tmp_path, ["cat"])
    tasks = [_reviewed_task(task_id, _image(tmp_path, f"img/{task_id}.png"),
                            [_prediction(10 * task_id, "v1", CAT_BOX)], parent=10 * task_id, lead_time=5.0)
             for task_id in (1, 2)]
    holder: Any = tasks[1]
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = "@MALFORMED@"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks).replace('"@MALFORMED@"', text))
    extra = ["--out", str(tmp_path / "dataset")] if command == "build-dataset" else []
    assert main([command, str(config), "--from-export", str(export), "--json", *extra]) == 1
    printed = json.loads(capsys.readouterr().out)
    (failure,) = printed["failures"]
    assert failure.startswith(message), failure
    if command == "report":
        assert printed["labels"]["cat"]["accepted"] == 1  # task 1
    else:
        assert printed["counts"]["images"] == 1

