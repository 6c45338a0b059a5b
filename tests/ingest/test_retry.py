"""Transient vs permanent failures in a real journal (SQLite file), the back-off, and an older journal's upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchlabel.ingest.journal import Journal
from batchlabel.ingest.retry import RETRY_MAX_S, is_transient, retry_delay_s


@pytest.mark.parametrize(
    ("reason", "transient"),
    [
        ("cannot write the embedding store: No space left on device", True),
        ("Label Studio unavailable: ConnectError", True),
        ("encoder failed: RuntimeError: [enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory: "
         "out of memory", True),
        ("truncated image file (image file is truncated)", False),
        ("refused as a possible decompression bomb: more than 100,000,000 pixels", False),
        ("", False),
    ],
)
def test_reasons_are_classified(reason: str, transient: bool) -> None:
    assert is_transient(reason) is transient


def test_back_off_doubles_up_to_an_hour() -> None:
    assert [retry_delay_s(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert retry_delay_s(50) == RETRY_MAX_S


def test_transient_failures_come_due_after_the_back_off_permanent_never(tmp_path: Path) -> None:
    now = [1000.0]
    journal = Journal(tmp_path / "journal.sqlite3", clock=lambda: now[0])
    journal.mark_failed("full.png", "encode", "cannot write the embedding store: No space left on device", "a" * 64)
    journal.mark_failed("broken.png", "encode", "truncated image file", "b" * 64)
    assert journal.get("full.png").transient and not journal.get("broken.png").transient  # type: ignore[union-attr]
    assert journal.due_retries() == []
    now[0] += retry_delay_s(1)
    assert [r.rel_path for r in journal.due_retries()] == ["full.png"]
    journal.mark_failed("full.png", "encode", "No space left on device")  # failed again: attempt 2
    now[0] += retry_delay_s(1)
    assert journal.due_retries() == []  # the back-off doubled
    now[0] += retry_delay_s(2)
    assert [r.rel_path for r in journal.due_retries()] == ["full.png"]
    assert journal.retry_failed() == 2  # --retry-failed: both, the permanent one too
    assert journal.failures() == []
    journal.close()


def test_a_journal_from_before_the_classification_is_upgraded_and_its_failures_classified(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE files (rel_path TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, mtime_ns INTEGER, "
                "stage TEXT NOT NULL, failed_stage TEXT, last_error TEXT, attempts INTEGER NOT NULL DEFAULT 0, "
                "model_id TEXT, model_version TEXT, task_id INTEGER, prediction_id INTEGER, "
                "push_started INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)")
    old.execute("INSERT INTO files (rel_path, stage, last_error, attempts, updated_at) "
                "VALUES ('x.png', 'failed', 'No space left on device', 1, 0)")
    old.commit()
    old.close()
    with Journal(path) as journal:
        record = journal.get("x.png")
        assert record is not None and record.stage == "failed" and record.transient  # classified on upgrade
