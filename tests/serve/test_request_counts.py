"""The interactive request counter ``serve`` keeps in the cache: counts per (project, task, label), shared by threads
and by a second reader (the report), and a broken file never fails a request."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from batchlabel.serve.request_counts import InteractiveRequestCounts, project_key


def test_counts_per_task_and_label_across_threads_and_readers(tmp_path: Path) -> None:
    counts = InteractiveRequestCounts(tmp_path)
    assert counts.for_project(7) is None  # nothing recorded yet: unknown, not zero
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: counts.record("7.1700000000", 3, "cat"), range(40)))
    counts.record("7.1700000000", 3, "person")
    counts.record("8.1700000000", 3, "cat")
    counts.record(None, 5, "cat")
    reader = InteractiveRequestCounts(tmp_path)
    assert reader.for_project(7) == {(3, "cat"): 40, (3, "person"): 1}
    assert reader.for_project("8") == {(3, "cat"): 1}
    assert reader.for_project(None) == {(5, "cat"): 1}
    assert reader.for_project(9) is None
    counts.close()
    reader.close()
    assert (project_key("12.1699999999"), project_key(None)) == ("12", "")


def test_a_broken_counts_file_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "interactive-requests.sqlite3").write_bytes(b"this is not a database" * 100)
    counts = InteractiveRequestCounts(tmp_path)
    with caplog.at_level(logging.WARNING):
        counts.record("1.2", 1, "cat")
    assert "cannot count the interactive request of task 1" in caplog.text
