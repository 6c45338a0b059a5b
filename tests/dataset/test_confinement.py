"""Issue 12, case 1 for build-dataset: a task whose image is a symlink out of the document root is refused with the
check serve and ingestion use, naming the task and the link (real files and symlinks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.dataset.ls_export import DatasetError, resolve_image_path


def test_symlink_out_of_the_root_is_refused_naming_task_and_link(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("TOPSECRET")
    (root / "passwd.jpg").symlink_to(tmp_path / "secret.txt")
    (root / "ok.jpg").write_bytes(b"x")
    assert resolve_image_path("ok.jpg", root, task_id=1) == (root / "ok.jpg").resolve()
    assert resolve_image_path("missing.jpg", root, task_id=2) == root.resolve() / "missing.jpg"  # reported later
    refused = r"task 3: image path 'passwd.jpg' points outside .*: a symlink resolving"
    with pytest.raises(DatasetError, match=refused) as info:
        resolve_image_path("passwd.jpg", root, task_id=3)
    assert "TOPSECRET" not in str(info.value)
    with pytest.raises(DatasetError, match="task 4: .*'..' in path"):
        resolve_image_path("../secret.txt", root, task_id=4)
