"""The nesting limit on exports: the numpy scan agrees with a byte-by-byte reference on hostile strings and every
chunk size, and ``report`` / ``build-dataset`` refuse a 200 KB deeply nested export (inside a task and at the top
level) with a message naming the position, in a process whose memory is capped (the old reader needed tens of GB)."""

from __future__ import annotations

import io
import json
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchlabel.dataset.json_nesting import JsonNestingError, NestingLimitedReader
from batchlabel.dataset.ls_export import MAX_EXPORT_DEPTH, ExportFormatError, iter_export_tasks

#: Strings that fool a naive bracket count: brackets, quotes and backslash runs of every parity inside strings.
TRICKY_STRINGS = ['[', ']]]', '{"', '\\', '\\\\', '\\"[', '"', 'a\\\\"]}', '\\\\\\"{{{', '$[}', '']


def _reference(data: bytes, max_depth: int) -> tuple[int, int, int] | None:
    """(max depth, offset, item) of the first byte that goes deeper than ``max_depth``, scanning byte by byte."""
    depth, items, in_string, escaped = 0, 0, False, False
    for offset, byte in enumerate(data):
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            items += depth == 2
            if depth > max_depth:
                return max_depth, offset, items - 1
        elif char in "]}":
            depth -= 1
    return None


def _document(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([*TRICKY_STRINGS, 1, 2.5, None, True])
    if rng.random() < 0.5:
        return [_document(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(TRICKY_STRINGS): _document(rng, depth - 1) for _ in range(rng.randint(0, 3))}


def _scan(data: bytes, max_depth: int, chunk: int) -> tuple[int, int, int] | None:
    reader = NestingLimitedReader(io.BytesIO(data), max_depth=max_depth)
    try:
        while reader.read(chunk):
            pass
    except JsonNestingError as error:
        return error.max_depth, error.offset, error.item
    return None


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 65536])
def test_the_scan_agrees_with_a_byte_by_byte_reference(chunk: int) -> None:
    rng = random.Random(chunk)
    for _ in range(60):
        data = json.dumps([_document(rng, 6) for _ in range(rng.randint(1, 4))]).encode()
        for max_depth in (2, 3, 4, 5, 8):
            assert _scan(data, max_depth, chunk) == _reference(data, max_depth), (data, max_depth)


def _deep_exports(tmp_path: Path) -> dict[str, Path]:
    """200 KB of nesting: inside the second task's data, and as the first item of the top-level array."""
    depth = 100_000
    first = json.dumps({"id": 1, "data": {"image": "/data/local-files/?d=img/1.png"}}).encode()
    inside = tmp_path / "inside-a-task.json"
    inside.write_bytes(b"[" + first + b', {"id": 2, "data": ' + b"[" * depth + b"]" * depth + b"}]")
    top = tmp_path / "top-level.json"
    top.write_bytes(b"[" * depth + b"]" * depth)
    return {"inside": inside, "top": top}


def test_iter_export_tasks_refuses_deep_nesting_naming_the_position(tmp_path: Path) -> None:
    exports = _deep_exports(tmp_path)
    # the task array and the task are levels 1 and 2: the data's (MAX_EXPORT_DEPTH - 1)th bracket is the first too deep
    offset = exports["inside"].read_bytes().index(b"[" * (MAX_EXPORT_DEPTH - 1)) + MAX_EXPORT_DEPTH - 2
    with pytest.raises(ExportFormatError, match=rf"inside-a-task.json: item 1 \(byte {offset}\): JSON nested deeper "
                                                rf"than {MAX_EXPORT_DEPTH} levels"):
        list(iter_export_tasks(exports["inside"]))  # refused as a whole, like broken JSON
    with pytest.raises(ExportFormatError, match=rf"top-level.json: item 0 \(byte {MAX_EXPORT_DEPTH}\): JSON nested"):
        next(iter_export_tasks(exports["top"]))


def _capped_memory() -> None:
    cap = 2 * 1024**3  # bytes of address space: the old reader needed tens of GB for these files
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@pytest.mark.parametrize("command", ["report", "build-dataset"])
def test_report_and_build_dataset_refuse_a_deeply_nested_export(tmp_path: Path, command: str) -> None:
    exports = _deep_exports(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "storage": {"root": str(tmp_path)}, "label_studio": {"url": "http://127.0.0.1:9", "labels": ["cat"]},
        "cache": {"dir": str(tmp_path / "cache")}, "dataset": {"out": str(tmp_path / "out")},
    }))
    for where, export in exports.items():
        done = subprocess.run([sys.executable, "-m", "batchlabel", command, str(config), "--from-export", str(export)],
                              capture_output=True, text=True, timeout=300, preexec_fn=_capped_memory)
        item = 1 if where == "inside" else 0
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"batchlabel {command}: {export}: item {item} (byte " in done.stderr
        assert f"JSON nested deeper than {MAX_EXPORT_DEPTH} levels" in done.stderr and "Traceback" not in done.stderr
