"""Issue 21, behaviours 1 and 2, as a user meets them with ``run`` (real CLI, the session's Label Studio, LiteMedSAM):
a renamed or moved file keeps its task (URL updated, no second task); a deleted file's task is kept, counted by
``status``, and ``run --prune-missing`` deletes only unannotated ones; an annotated file overwritten with new
content is warned about, naming the task, and counted by ``status``."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from batchlabel.sync.client import rel_path_from_url
from tests.ingest.ingest_helpers import project_tasks, run_cli, sample_images, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def _tasks_by_path(ls, title: str) -> dict[str, dict]:
    return {rel_path_from_url(t["data"]["image"]): t for t in project_tasks(ls, title)}


def _annotate(ls, task: dict) -> None:
    rect = {"from_name": "rect", "to_name": "image", "type": "rectanglelabels", "original_width": 64,
            "original_height": 64, "image_rotation": 0,
            "value": {"x": 10, "y": 10, "width": 40, "height": 40, "rotation": 0, "rectanglelabels": ["cat"]}}
    ls.annotations.create(id=task["id"], result=[rect])


def test_moved_deleted_and_overwritten_files_keep_their_tasks_and_are_reported(label_studio, make_config, tmp_path):
    config = make_config(preannotate={"mode": "none"})
    root = config.storage.root
    images = sample_images(5, side=64)
    for name, image in zip(("a.png", "b.png", "c.png", "d.png", "e.png"), images, strict=True):
        write_png(root / name, image)
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")
    title = config.label_studio.project
    ls = label_studio.client
    assert run_cli("run", str(cfg)).returncode == 0
    before = _tasks_by_path(ls, title)
    assert sorted(before) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    _annotate(ls, before["b.png"])
    _annotate(ls, before["c.png"])

    (root / "sub").mkdir()
    os.rename(root / "a.png", root / "sub" / "renamed.png")  # moved into another folder, renamed
    shutil.copy(root / "e.png", root / "e-moved.png")  # moved as copy-then-delete (another filesystem)
    (root / "c.png").unlink()  # annotated, deleted
    (root / "d.png").unlink()  # not annotated, deleted
    write_png(root / "b.png", sample_images(6, side=64)[5])  # annotated, overwritten with new content
    first = run_cli("run", str(cfg), "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    (root / "e.png").unlink()
    second = run_cli("run", str(cfg), "--json")
    assert second.returncode == 0, second.stderr[-3000:]

    after = _tasks_by_path(ls, title)
    assert sorted(after) == ["b.png", "c.png", "d.png", "e-moved.png", "sub/renamed.png"]  # no second task
    assert after["sub/renamed.png"]["id"] == before["a.png"]["id"]
    assert after["e-moved.png"]["id"] == before["e.png"]["id"]
    assert "sub/renamed.png: moved from a.png (same sha256); task" in first.stderr
    assert json.loads(first.stdout)["moved"] == 1 and json.loads(second.stdout)["moved"] == 1

    b_id = before["b.png"]["id"]
    assert f"b.png: overwritten with new content, but task {b_id} holds 1 annotation(s)" in first.stderr
    assert json.loads(first.stdout)["overwritten_annotated"] == 1
    assert [(g["path"], g["task_id"]) for g in json.loads(second.stdout)["missing"]] == [
        ("c.png", before["c.png"]["id"]), ("d.png", before["d.png"]["id"])]
    assert "2 file(s) deleted from" in second.stderr and "--prune-missing" in second.stderr
    status = json.loads(run_cli("status", str(cfg), "--json").stdout)
    assert [g["path"] for g in status["deleted_with_task"]] == ["c.png", "d.png"]
    assert [(o["path"], o["task_id"]) for o in status["overwritten_annotated"]] == [("b.png", b_id)]

    pruned = run_cli("run", str(cfg), "--json", "--prune-missing")
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    report = json.loads(pruned.stdout)
    assert [g["path"] for g in report["pruned"]] == ["d.png"] and [g["path"] for g in report["missing"]] == ["c.png"]
    assert sorted(_tasks_by_path(ls, title)) == ["b.png", "c.png", "e-moved.png", "sub/renamed.png"]  # annotated kept
    status_text = run_cli("status", str(cfg)).stdout
    assert f"DELETED c.png: task {before['c.png']['id']} kept" in status_text and "DELETED d.png" not in status_text
    assert f"OVERWRITTEN b.png: task {b_id} holds 1 annotation(s) of the old content" in status_text
