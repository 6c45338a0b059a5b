"""The interactive request counter ``serve`` keeps in the cache: counts per (project, task, label), shared by threads
and by a second reader (the report), and a broken file, a locked file (a real second process holding the lock) or a
task id beyond 64 bits never fails nor delays a click: the count is dropped with a warning, the answer comes back."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from batchlabel.serve.app import create_app
from batchlabel.serve.request_counts import FILE_NAME, InteractiveRequestCounts, project_key
from tests.serve.conftest import CAT_BOX, box_context, brush_masks, predict_body, save_image

CAT_URL = "/data/local-files/?d=cats/chelsea.jpg"

#: A second process that takes the counts file's write lock, says so, and holds it until its stdin closes.
_LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    """Hold ``path``'s SQLite write lock from a real second process for the ``with`` block."""
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        assert locker.wait(timeout=30) == 0


def test_counts_per_task_and_label_across_threads_and_readers(tmp_path: Path) -> None:
    counts = InteractiveRequestCounts(tmp_path)
    assert counts.for_project(7) is None  # nothing recorded yet: unknown, not zero
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: counts.record("7.1700000000", 3, "cat"), range(40)))
    counts.record("7.1700000000", 3, "person")
    counts.record("8.1700000000", 3, "cat")
    counts.record(None, 5, "cat")
    assert counts.flush()  # written by the writer thread, off the callers' path
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
        assert counts.flush()
    assert "cannot count 1 interactive request(s): file is not a database (tasks [1])" in caplog.text
    counts.close()


def test_counts_are_dropped_with_a_warning_while_another_process_locks_the_file_then_resume(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counts = InteractiveRequestCounts(tmp_path)
    counts.record("7.1", 1, "cat")
    assert counts.flush()
    with caplog.at_level(logging.WARNING), locked_by_another_process(tmp_path / FILE_NAME):
        for _ in range(5):
            counts.record("7.1", 2, "cat")  # returns at once: the writer thread waits, not the caller
        assert counts.flush()
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) >= 1 and "database is locked" in warnings[0] and "dropping counts" in warnings[0]
    counts.record("7.1", 3, "cat")
    assert counts.flush()
    assert "counting interactive requests again; 5 count(s) were dropped" in caplog.text
    reader = InteractiveRequestCounts(tmp_path)
    assert reader.for_project(7) == {(1, "cat"): 1, (3, "cat"): 1}  # the dropped ones are lost, nothing else
    counts.close()
    reader.close()


def test_a_full_queue_drops_the_count_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import batchlabel.serve.request_counts as request_counts

    monkeypatch.setattr(request_counts, "MAX_PENDING_COUNTS", 2)
    counts = InteractiveRequestCounts(tmp_path)
    counts.record("7.1", 1, "cat")
    assert counts.flush()
    with caplog.at_level(logging.WARNING), locked_by_another_process(tmp_path / FILE_NAME):
        for _ in range(50):  # the writer holds at most one batch while it waits: the queue of 2 overflows
            counts.record("7.1", 2, "cat")
        assert "2 counts are waiting to be written; dropping counts until it can" in caplog.text
    assert counts.flush()
    counts.close()


@pytest.fixture
def cat_client(offline_config: Any, litemedsam: Any, chelsea: np.ndarray) -> Iterator[TestClient]:
    """The backend on the session's shared cache (embedding and decoder reused): each test counts in its own
    project (:func:`_click`)."""
    config = offline_config(litemedsam)
    save_image(chelsea, config.storage.root / "cats" / "chelsea.jpg")
    with TestClient(create_app(config, model=litemedsam), raise_server_exceptions=False) as client:
        yield client


def _click(client: TestClient, task_id: int, project: int) -> None:
    body = predict_body(CAT_URL, [box_context(CAT_BOX, (300, 451))], task_id=task_id)
    response = client.post("/predict", json={**body, "project": f"{project}.1700000000"})
    assert response.status_code == 200, response.text
    (mask,) = brush_masks(response.json()["results"][0]["result"])
    assert mask.any()  # the annotator's answer came back


@pytest.mark.slow
@pytest.mark.parametrize("task_id", [2**63, -(2**63) - 1])
def test_a_click_whose_task_id_is_beyond_64_bits_is_answered_not_counted(
        task_id: int, cat_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    project = uuid.uuid4().int % 10**9
    with caplog.at_level(logging.WARNING):
        _click(cat_client, task_id, project)
    assert f"task id {task_id} is not a 64-bit integer; its interactive request is not counted" in caplog.text
    _click(cat_client, 4, project)
    counts = cat_client.app.state.backend.request_counts  # type: ignore[attr-defined]
    assert counts.flush()
    assert counts.for_project(project) == {(4, "cat"): 1}


@pytest.mark.slow
def test_clicks_answer_while_another_process_locks_the_counts_file(
        cat_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    counts = cat_client.app.state.backend.request_counts  # type: ignore[attr-defined]
    project = uuid.uuid4().int % 10**9
    _click(cat_client, 1, project)
    assert counts.flush()
    with caplog.at_level(logging.WARNING), locked_by_another_process(counts.path):
        with ThreadPoolExecutor(3) as pool:  # concurrent clicks, none waits for the lock
            list(pool.map(lambda task: _click(cat_client, task, project), [2, 3, 4]))
        assert counts.flush()
        locked = [r for r in caplog.records if "database is locked" in r.getMessage()]
        assert locked and {r.threadName for r in locked} == {"interactive-request-counts"}  # not a click's thread
    _click(cat_client, 5, project)
    assert counts.flush()
    assert "counting interactive requests again; 3 count(s) were dropped" in caplog.text
    assert counts.for_project(project) == {(1, "cat"): 1, (5, "cat"): 1}
