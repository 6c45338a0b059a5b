"""Journal transitions, persistence across connections, and concurrent writers."""

from __future__ import annotations

import threading

from batchlabel.ingest.journal import Journal


def test_stage_transitions_persist(tmp_path):
    path = tmp_path / "cache" / "journal.sqlite3"
    with Journal(path, clock=lambda: 100.0) as journal:
        assert journal.mark_discovered("a/cat.jpg", "aa", size=10, mtime_ns=1) is True
        assert journal.mark_discovered("a/cat.jpg", "aa", size=10, mtime_ns=1) is False
        journal.mark_encoded("a/cat.jpg", "aa", "litemedsam@x")
        journal.mark_predicted("a/cat.jpg", "v1")
        journal.mark_push_started(["a/cat.jpg"])
        record = journal.get("a/cat.jpg")
        assert record.stage == "predicted" and record.push_started and record.attempts == 1
        journal.mark_pushed("a/cat.jpg", 7, 9, "v1")
    with Journal(path) as journal:
        record = journal.get("a/cat.jpg")
        assert (record.stage, record.task_id, record.prediction_id, record.push_started) == (
            "pushed",
            7,
            9,
            False,
        )
        assert record.updated_at == 100.0
        assert journal.counts()["pushed"] == 1
        assert journal.pending() == []


def test_new_content_is_a_new_version_and_keeps_the_task(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.mark_discovered("x.png", "old")
        journal.mark_pushed("x.png", 3, 4, "v1")
        assert journal.mark_discovered("x.png", "new") is True
        record = journal.get("x.png")
        assert (record.stage, record.sha256, record.task_id, record.prediction_id) == (
            "discovered",
            "new",
            3,
            None,
        )


def test_failures_duplicates_and_owner(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.mark_failed("bad.jpg", "load", "not an image: cannot identify image file")
        journal.mark_discovered("a.jpg", "same")
        journal.mark_duplicate("b.jpg", "same", owner="a.jpg")
        assert journal.owner_of("same", exclude="b.jpg").rel_path == "a.jpg"
        assert journal.owner_of("same", exclude="a.jpg") is None
        [failure] = journal.failures()
        assert (failure.rel_path, failure.failed_stage, failure.attempts) == ("bad.jpg", "load", 1)
        assert "not an image" in failure.last_error
        counts = journal.counts()
        assert counts["failed"] == 1 and counts["duplicate"] == 1 and counts["discovered"] == 1


def test_concurrent_writers_from_two_connections(tmp_path):
    path = tmp_path / "j.sqlite3"
    first, second = Journal(path), Journal(path)

    def write(journal: Journal, prefix: str) -> None:
        for index in range(50):
            journal.mark_discovered(f"{prefix}{index}.jpg", f"{prefix}{index}")
            journal.mark_encoded(f"{prefix}{index}.jpg", f"{prefix}{index}", "m")

    threads = [threading.Thread(target=write, args=(j, p)) for j, p in ((first, "a"), (second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert first.counts()["encoded"] == 100
    first.close()
    second.close()


def test_a_move_carries_the_row_and_its_note_and_remove_drops_both(tmp_path):
    with Journal(tmp_path / "j.sqlite3", clock=lambda: 5.0) as journal:
        journal.mark_discovered("old.png", "aa")
        journal.mark_pushed("old.png", 3, 4, "v1")
        journal.note_overwritten_annotated("old.png", 3, 2)
        journal.mark_discovered("new/place.png", "aa")  # what the intake journals before it sees the move
        journal.move("old.png", "new/place.png")
        assert journal.get("old.png") is None
        record = journal.get("new/place.png")
        assert (record.stage, record.sha256, record.task_id, record.prediction_id) == ("pushed", "aa", 3, 4)
        assert journal.overwritten_annotated() == [("new/place.png", 3, 2, 5.0)]
        journal.move("never-journaled.png", "elsewhere.png")  # no row: nothing happens
        assert journal.get("elsewhere.png") is None
        journal.remove("new/place.png")  # a pushed row too (its task was pruned)
        assert journal.is_empty() and journal.overwritten_annotated() == []


def test_a_duplicate_given_new_content_does_not_take_over_its_twins_task(tmp_path):
    with Journal(tmp_path / "j.sqlite3") as journal:
        journal.mark_discovered("a.png", "aa")
        journal.mark_pushed("a.png", 3, 4, "v1")
        journal.mark_duplicate("copy.png", "aa", "a.png", 3)
        assert journal.mark_discovered("copy.png", "bb") is True  # overwritten with other bytes
        record = journal.get("copy.png")
        assert (record.stage, record.task_id) == ("discovered", None)  # a new file: its own task, a.png's untouched
        journal.mark_discovered("x.png", "cc")
        journal.mark_pushed("x.png", 7, 8, "v1")
        journal.mark_discovered("x.png", "dd")
        assert journal.get("x.png").task_id == 7  # a file's own task is kept for its new version
