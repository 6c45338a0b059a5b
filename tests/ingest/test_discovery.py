"""Discovery: glob filters, scan, and the stability rule driven by an injected clock (no sleeps)."""

from __future__ import annotations

import os
import time

import pytest

from batchlabel.ingest.discovery import PathFilter, StabilityTracker, scan

IMAGES = ("**/*.jpg", "**/*.jpeg", "**/*.png")


@pytest.mark.parametrize(
    ("rel_path", "expected"),
    [
        ("cat.jpg", True),
        ("a/b/cat.JPG", True),
        ("a/cat.png", True),
        ("a/cat.gif", False),
        (".hidden.jpg", False),
        ("a/.cache/cat.jpg", False),
        ("a/cat.jpg.part", False),
        ("a/cat.jpg.crdownload", False),
        ("a/cat.jpg~", False),
        ("skip/cat.jpg", False),
    ],
)
def test_path_filter(rel_path, expected):
    assert PathFilter(IMAGES, exclude=("skip/**",)).matches(rel_path) is expected


def test_scan_finds_nested_images_only(tmp_path):
    for rel in ("a.jpg", "sub/b.png", "sub/deeper/c.jpeg", "sub/notes.txt", ".trash/d.jpg", "sub/e.jpg.part"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = sorted(p.relative_to(tmp_path).as_posix() for p in scan(tmp_path, PathFilter(IMAGES)))
    assert found == ["a.jpg", "sub/b.png", "sub/deeper/c.jpeg"]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_growing_file_becomes_stable_only_after_it_stops_changing(tmp_path):
    clock = FakeClock()
    wall = FakeClock(time.time() + 0)  # mtimes are "now": not old enough to count at first look
    tracker = StabilityTracker(tmp_path, PathFilter(IMAGES), stable_s=2.0, clock=clock, wall_clock=wall)
    path = tmp_path / "slow.jpg"
    path.write_bytes(b"a" * 10)
    os.utime(path, ns=(int(wall.now * 1e9), int(wall.now * 1e9)))
    assert tracker.observe(path)
    assert not tracker.observe(tmp_path / "notes.txt")
    assert tracker.poll() == []  # first look: starts the wait
    clock.now += 1.5
    with path.open("ab") as handle:  # still being written
        handle.write(b"b" * 10)
    assert tracker.poll() == []
    clock.now += 1.9
    assert tracker.poll() == []  # unchanged for 1.9 s < 2 s
    clock.now += 0.2
    [stable] = tracker.poll()
    assert (stable.rel_path, stable.size) == ("slow.jpg", 20)
    assert tracker.pending() == 0


def test_old_files_and_atomic_moves_are_stable_at_first_look(tmp_path):
    clock = FakeClock()
    tracker = StabilityTracker(tmp_path, PathFilter(IMAGES), stable_s=5.0, clock=clock)
    old = tmp_path / "old.png"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 60, time.time() - 60))
    moved = tmp_path / "moved.jpg"
    moved.write_bytes(b"y")
    tracker.observe(old)
    tracker.observe(moved, atomic=True)
    tracker.observe(tmp_path / "gone.jpg")
    assert sorted(f.rel_path for f in tracker.poll()) == ["moved.jpg", "old.png"]
    assert tracker.pending() == 0  # the missing file was dropped
