"""``preannotate.mode: detect`` config validation: every error names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.config import ConfigError, parse_config

BASE = {"storage": {"root": "data"}, "label_studio": {"url": "http://x", "labels": ["cat", "diningtable"]}}


def _parse(preannotate: dict, tmp_path: Path):
    return parse_config({**BASE, "preannotate": preannotate}, source="c.yaml", base_dir=tmp_path)


def test_detect_config_resolves_paths_and_maps_labels(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "yolo.pt").write_bytes(b"x")
    config = _parse({"mode": "detect", "detector": {"model": "weights/yolo.pt",
                                                    "classes": {"diningtable": ["dining table"]},
                                                    "min_score": {"cat": 0.4}}}, tmp_path)
    detector = config.preannotate.detector
    assert detector is not None and detector.model == str(tmp_path / "weights" / "yolo.pt")
    assert detector.names_for(("cat", "diningtable")) == {"cat": ("cat",), "diningtable": ("dining table",)}
    assert detector.min_score_for("cat") == 0.4 and detector.min_score_for("diningtable") == 0.25
    hub = _parse({"mode": "detect", "detector": {"model": "facebook/sam3"}}, tmp_path)
    assert hub.preannotate.detector is not None and hub.preannotate.detector.model == "facebook/sam3"


@pytest.mark.parametrize(("preannotate", "message"), [
    ({"mode": "detect"}, "c.yaml: preannotate: mode: detect needs a `detector` section"),
    ({"mode": "detect", "detector": {"model": "y.pt", "min_score": 1.5}}, "preannotate.detector.min_score: expected"),
    ({"mode": "detect", "detector": {"model": "y.pt", "kind": "yolo"}}, "preannotate.detector.kind: expected one of"),
    ({"mode": "detect", "detector": {"model": "y.pt", "max_objects": 0}}, "preannotate.detector.max_objects: expected"),
    ({"mode": "detect", "detector": {"model": "y.pt", "classes": {"dog": ["dog"]}}},
     "preannotate.detector.classes: ['dog'] not in label_studio.labels ['cat', 'diningtable']"),
    ({"mode": "detect", "detector": {"model": "y.pt", "classes": {"cat": []}}}, "preannotate.detector.classes: labels"),
    ({"mode": "detect", "detector": {"model": "y.pt", "colour": "red"}}, "preannotate.detector.colour: unknown key"),
])
def test_detect_config_errors_name_the_key(tmp_path, preannotate, message):
    with pytest.raises(ConfigError) as error:
        _parse(preannotate, tmp_path)
    assert message in str(error.value)
