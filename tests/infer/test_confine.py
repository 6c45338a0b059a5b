"""The one path-confinement check: real files and symlinks in a temporary document root."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.infer.confine import PathConfinementError, confine_path, confine_relative


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "cat.jpg").write_bytes(b"x")
    (root / "lit%2e%2e.jpg").write_bytes(b"x")
    (tmp_path / "outside.txt").write_text("root:x:0:0:secret")
    (root / "passwd.jpg").symlink_to(tmp_path / "outside.txt")
    (root / "inside.jpg").symlink_to(root / "sub" / "cat.jpg")
    (root / "dangling.jpg").symlink_to(root / "gone.jpg")
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    (root / "dir-out").symlink_to(tmp_path)
    return root


def test_files_inside_resolve(root: Path) -> None:
    assert confine_path(root / "inside.jpg", root) == (root / "sub" / "cat.jpg").resolve()
    assert confine_relative("sub/cat.jpg", root) == (root / "sub" / "cat.jpg").resolve()
    assert confine_relative("lit%2e%2e.jpg", root).name == "lit%2e%2e.jpg"  # a name, not an encoding


@pytest.mark.parametrize("relative", ["passwd.jpg", "dir-out/outside.txt", "loop.jpg", "../outside.txt",
                                      "/etc/passwd", "~/x", "C:/x", "a\\b", "a\x00b"])
def test_what_could_leave_the_root_is_refused_without_echoing_contents(root: Path, relative: str) -> None:
    with pytest.raises(PathConfinementError) as info:
        confine_relative(relative, root)
    assert info.value.outside
    assert "secret" not in str(info.value)


def test_symlink_out_is_named_and_missing_is_not_outside(root: Path) -> None:
    with pytest.raises(PathConfinementError, match="passwd.jpg: a symlink resolving outside the document root"):
        confine_path(root / "passwd.jpg", root)
    with pytest.raises(PathConfinementError) as info:
        confine_path(root / "dangling.jpg", root)
    assert info.value.missing and not info.value.outside
    with pytest.raises(PathConfinementError, match="not a regular file"):
        confine_relative("sub", root)
