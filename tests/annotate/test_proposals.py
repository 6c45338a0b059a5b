"""The detector's stored proposals: a round trip, and the one validated read (a damaged entry is one warning,
removed, a miss; the next detection is stored again), over the damage kinds found by issue 21."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchlabel.annotate.detectors.base import Detection
from batchlabel.annotate.proposals import MAX_ENTRY_BYTES, ProposalStore, proposals_key

SHA = "ab" * 32
KEY = proposals_key("ultralytics:yolo11n@test", {"cat": ["cat"]}, 0.25, 20)
SIZE = (30, 40)  # (height, width)


def _good_entry() -> dict[str, Any]:
    return {"format": 1, "detector_id": "ultralytics:yolo11n@test", "image_size": list(SIZE),
            "detections": [{"label": "cat", "box_xyxy": [1.0, 2.0, 30.0, 25.0], "score": 0.9, "mask": None}]}


def _detection(**changes: Any) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        entry = _good_entry()
        entry["detections"][0].update(changes)
        path.write_text(json.dumps(entry))
    return damage


def _entry(**changes: Any) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.write_text(json.dumps({**_good_entry(), **changes}))
    return damage


def _text(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "inside.json").write_text("{}")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deep JSON (RecursionError)": _text("[" * 100_000 + "]" * 100_000),
    "two-number box (IndexError)": _detection(box_xyxy=[1.0, 2.0]),
    "200000x200000 mask (MemoryError)": _detection(mask={"size": [200_000, 200_000], "counts": "0"}),
    "mask of another size": _detection(mask={"size": [10, 10], "counts": "0"}),
    "mask counts not a mask": _detection(mask={"size": list(SIZE), "counts": "garbage!"}),
    "entry replaced by a folder (IsADirectoryError)": _folder,
    "NaN box": _text(json.dumps(_good_entry()).replace("30.0, 25.0", "NaN, 25.0")),
    "infinite box": _text(json.dumps(_good_entry()).replace("30.0, 25.0", "Infinity, 25.0")),
    "1e30 box": _detection(box_xyxy=[0.0, 0.0, 1e30, 1e30]),
    "box upside down": _detection(box_xyxy=[30.0, 25.0, 1.0, 2.0]),
    "non-positive image size": _entry(image_size=[0, -40]),
    "image size over the pixel limit": _entry(image_size=[200_000, 200_000]),
    "label not text": _detection(label={"cat": 1}),
    "NaN score": _text(json.dumps(_good_entry()).replace("0.9", "NaN")),
    "detections not a list": _entry(detections={"a": 1}),
    "not an object": _text("[1, 2, 3]"),
    "garbled": _text("{\"format\": 1, \"image_si"),
    "not UTF-8": lambda path: path.write_bytes(b"\xff\xfe\x00garbage"),
    "over the size limit": lambda path: path.write_bytes(b" " * (MAX_ENTRY_BYTES + 1)),
}


def test_round_trip_with_a_mask(tmp_path: Path) -> None:
    store = ProposalStore(tmp_path)
    mask = np.zeros(SIZE, bool)
    mask[2:20, 3:30] = True
    store.put(SHA, KEY, SIZE, [Detection("cat", (3.0, 2.0, 30.0, 20.0), 0.8, mask)], detector_id="d")
    size, (detection,) = store.get(SHA, KEY)  # type: ignore[misc]
    assert size == SIZE and detection.label == "cat" and detection.box_xyxy == (3.0, 2.0, 30.0, 20.0)
    assert detection.mask is not None and np.array_equal(detection.mask, mask)
    assert store.get("cd" * 32, KEY) is None  # not stored: a miss, no warning


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_entry_is_one_warning_removed_and_a_miss(
        damage: Callable[[Path], None], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ProposalStore(tmp_path)
    store.put(SHA, KEY, SIZE, [Detection("cat", (1.0, 2.0, 30.0, 25.0), 0.9, None)], detector_id="d")
    (path,) = tmp_path.rglob("*.json")
    path.unlink()
    damage(path)
    with caplog.at_level(logging.WARNING):
        assert store.get(SHA, KEY) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0] and "corrupt stored proposals" in warnings[0]
    assert not path.exists()  # removed: the next read is a plain miss, the next detection is stored
    caplog.clear()
    assert store.get(SHA, KEY) is None and not caplog.records
    store.put(SHA, KEY, SIZE, [Detection("cat", (1.0, 2.0, 30.0, 25.0), 0.9, None)], detector_id="d")
    assert store.get(SHA, KEY) == (SIZE, [Detection("cat", (1.0, 2.0, 30.0, 25.0), 0.9, None)])


def test_a_failed_write_is_a_warning_not_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / SHA[:2]).write_text("a file where the entry's folder should be")
    with caplog.at_level(logging.WARNING):
        ProposalStore(tmp_path).put(SHA, KEY, SIZE, [], detector_id="d")
    assert "cannot store the proposals" in caplog.text
