"""Finding image files under the document root: filters, an initial scan, a watchdog observer, stability.

A file counts only once it is *stable*: its size and mtime unchanged for ``storage.stable_s`` seconds (polled), or
it was moved in atomically (a rename into the tree is complete by definition). Hidden files and folders, temporary
and partial-download files are ignored; ``storage.include`` / ``storage.exclude`` globs (``**`` = any folders,
matched case-insensitively against the POSIX path relative to the root) select the rest.

I/O and clocks are injectable (``stat``, ``clock``, ``wall_clock``) so tests need no sleeps.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from batchlabel.infer.confine import PathConfinementError, confine_path

log = logging.getLogger(__name__)

#: Name patterns of files still being written by browsers, editors, rsync, curl, etc.
TEMP_PATTERNS = (
    "*.tmp", "*.temp", "*.part", "*.partial", "*.crdownload", "*.download", "*.filepart", "*.swp", "*~",
    "~$*", "*.!ut", "*.opdownload",
)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``**/`` = zero or more folders, ``*`` and ``?`` within one name, ``[...]`` classes."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:[^/]*/)*")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        elif pattern[index] == "[":
            end = pattern.find("]", index + 1)
            if end < 0:
                out.append(re.escape("["))
                index += 1
            else:
                body = pattern[index + 1:end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                index = end + 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE)


class PathFilter:
    """Which relative paths are images to ingest (include/exclude globs; hidden and temporary files never)."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str] = ()) -> None:
        self._include = [glob_to_regex(p) for p in include]
        self._exclude = [glob_to_regex(p) for p in exclude]
        self._temp = [glob_to_regex(p) for p in TEMP_PATTERNS]

    def matches(self, rel_path: str) -> bool:
        """True for a POSIX path relative to the root that should be ingested."""
        parts = rel_path.split("/")
        if any(part.startswith(".") for part in parts):
            return False
        name = parts[-1]
        if any(p.match(name) for p in self._temp):
            return False
        if not any(p.match(rel_path) for p in self._include):
            return False
        return not any(p.match(rel_path) for p in self._exclude)


def relative_posix(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` with ``/`` separators, or None when it is not under ``root``."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return None


def scan(root: Path, path_filter: PathFilter, *, scandir: Callable[[str], object] = os.scandir) -> Iterator[Path]:
    """Every matching regular file under ``root`` (recursive, hidden folders skipped, symlinked folders not
    followed), in sorted order per folder. A file symlink whose target leaves ``root`` is skipped with a warning
    naming the link (:func:`batchlabel.infer.confine.confine_path`)."""
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            with scandir(str(folder)) as entries:  # type: ignore[attr-defined]
                items = sorted(entries, key=lambda e: e.name)
        except OSError as error:
            log.warning("cannot list %s: %s", folder, error.strerror or error)
            continue
        subfolders = []
        for entry in items:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(path)
                    continue
                if not entry.is_file():
                    continue
            except OSError:
                continue
            rel = relative_posix(path, root)
            if rel is None or not path_filter.matches(rel):
                continue
            if entry.is_symlink():
                try:
                    confine_path(path, root)
                except PathConfinementError as error:
                    log.warning("%s: skipped: %s", rel, error.reason)
                    continue
            yield path
        stack.extend(reversed(subfolders))


@dataclass(frozen=True)
class StableFile:
    """A file that stopped changing: absolute ``path``, POSIX ``rel_path`` under the root, its size and mtime."""

    path: Path
    rel_path: str
    size: int
    mtime_ns: int


@dataclass
class _Candidate:
    size: int | None
    mtime_ns: int | None
    since: float
    atomic: bool


class StabilityTracker:
    """Files seen (by a scan or an event) wait here until their size and mtime stop changing.

    Args:
        root: the document root (paths outside it are ignored).
        path_filter: which files count.
        stable_s: how long size and mtime must stay unchanged.
        clock: monotonic seconds (injectable).
        wall_clock: unix seconds, compared with mtimes: a file last modified at least ``stable_s`` ago is stable at
            its first look (a scan of files already there takes no waiting).
        stat: ``os.stat``-like (injectable).
    """

    def __init__(
        self,
        root: Path,
        path_filter: PathFilter,
        *,
        stable_s: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> None:
        self.root = Path(root)
        self.path_filter = path_filter
        self.stable_s = stable_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._stat = stat
        self._candidates: dict[Path, _Candidate] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def observe(self, path: str | os.PathLike[str], *, atomic: bool = False) -> bool:
        """Note that ``path`` appeared or changed (``atomic``: it was renamed into place). Returns True when the
        file is one to ingest."""
        path = Path(path)
        rel = relative_posix(path, self.root)
        if rel is None or not self.path_filter.matches(rel):
            return False
        with self._lock:
            current = self._candidates.get(path)
            if current is None:
                self._candidates[path] = _Candidate(None, None, self._clock(), atomic)
            else:
                current.atomic = current.atomic or atomic
        self._changed.set()
        return True

    def forget(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            self._candidates.pop(Path(path), None)

    def pending(self) -> int:
        with self._lock:
            return len(self._candidates)

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until something is observed or ``timeout_s`` passes (the daemon's idle wait)."""
        changed = self._changed.wait(timeout_s)
        self._changed.clear()
        return changed

    def next_due_s(self) -> float | None:
        """Seconds until the earliest waiting file could become stable (None when nothing waits)."""
        with self._lock:
            if not self._candidates:
                return None
            now = self._clock()
            return max(0.0, min(c.since + self.stable_s - now for c in self._candidates.values()))

    def poll(self) -> list[StableFile]:
        """Re-stat every waiting file; return (and stop tracking) the ones that are now stable."""
        now = self._clock()
        wall = self._wall_clock()
        ready: list[StableFile] = []
        with self._lock:
            items = list(self._candidates.items())
        for path, candidate in items:
            try:
                info = self._stat(path)
            except FileNotFoundError:
                self.forget(path)
                continue
            except OSError as error:
                log.warning("cannot stat %s: %s", path, error.strerror or error)
                continue
            signature = (info.st_size, info.st_mtime_ns)
            old_enough = wall - info.st_mtime_ns / 1e9 >= self.stable_s
            if (candidate.size, candidate.mtime_ns) != signature:
                first_look = candidate.size is None
                candidate.size, candidate.mtime_ns = signature
                if not (first_look and (candidate.atomic or old_enough)):
                    candidate.since = now
                    candidate.atomic = False
                    continue
            elif not (candidate.atomic or old_enough or now - candidate.since >= self.stable_s):
                continue
            rel = relative_posix(path, self.root)
            if rel is None:
                continue
            ready.append(StableFile(path, rel, info.st_size, info.st_mtime_ns))
            with self._lock:
                if self._candidates.get(path) is candidate:
                    del self._candidates[path]
        return ready


class FolderWatcher:
    """A recursive watchdog observer on ``root`` feeding a :class:`StabilityTracker`.

    Created files and modifications restart a file's stability wait; a file moved into the tree counts as
    complete; deleted files are dropped. ``observer_factory`` is injectable (watchdog's ``Observer`` by default,
    ``PollingObserver`` for filesystems without inotify).
    """

    def __init__(self, tracker: StabilityTracker, *, observer_factory: Callable[[], object] | None = None) -> None:
        self.tracker = tracker
        self._observer_factory = observer_factory
        self._observer: object | None = None

    def start(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        tracker = self.tracker

        class _Handler(FileSystemEventHandler):
            def on_created(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    tracker.observe(os.fsdecode(event.src_path))
                else:  # a folder moved or copied in: its files may produce no events of their own
                    for path in scan(tracker.root, tracker.path_filter):
                        if str(path).startswith(os.fsdecode(event.src_path)):
                            tracker.observe(path)

            def on_modified(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    tracker.observe(os.fsdecode(event.src_path))

            def on_closed(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    tracker.observe(os.fsdecode(event.src_path))

            def on_moved(self, event: FileSystemEvent) -> None:
                tracker.forget(os.fsdecode(event.src_path))
                if not event.is_directory:
                    tracker.observe(os.fsdecode(event.dest_path), atomic=True)
                else:
                    dest = os.fsdecode(event.dest_path)
                    for path in scan(Path(dest), PathFilter(["**"])):
                        tracker.observe(path, atomic=True)

            def on_deleted(self, event: FileSystemEvent) -> None:
                tracker.forget(os.fsdecode(event.src_path))

        factory = self._observer_factory or Observer
        observer = factory()
        observer.schedule(_Handler(), str(tracker.root), recursive=True)  # type: ignore[attr-defined]
        observer.daemon = True  # type: ignore[attr-defined]
        observer.start()  # type: ignore[attr-defined]
        self._observer = observer

    def stop(self) -> None:
        observer = self._observer
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=5.0)  # type: ignore[attr-defined]
            self._observer = None
