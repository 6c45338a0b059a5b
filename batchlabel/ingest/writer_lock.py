"""One writer per cache folder: the lock that every command writing the ingestion journal or pushing to Label Studio
holds for its whole life (``run``, ``watch``, ``up``'s watcher, ``encode`` when it journals, ``train``'s re-predict).

Two writers on one journal give every new file two tasks and two predictions (both see it as new before either
pushes), so they must not overlap. The lock is ``fcntl.flock(LOCK_EX)`` on ``<cache.dir>/writer.lock``; the holder
writes its pid, command, host and start time (JSON) into that file so a refused command can name it. The kernel
releases a flock when its process dies (``kill -9`` included), so a stale file of a dead process never blocks: the
next command takes the lock and overwrites the stale text. Local filesystems only (flock on NFS depends on the
mount). The file descriptor is not inherited by child processes started with ``subprocess`` (Python's default).

API (reuse it; one lock per cache folder, whatever the command):

- ``with acquire(config, command="run", wait_s=0.0) as me:`` holds the lock for the block (``me``: the
  :class:`LockHolder` written), else raises :class:`WriterLockBusyError` naming the holder after ``wait_s`` seconds;
  ``should_stop_waiting(holder) -> bool`` ends the wait early (e.g. ``run`` stops waiting once a daemon holds it).
- ``holder(config) -> LockHolder | None``: who holds it now, without waiting or taking it (``status``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchlabel.config import Config

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "writer.lock"
#: Commands that ingest continuously: a ``run`` finding one of them holding the lock leaves the files to it.
DAEMON_COMMANDS = ("watch", "up")
POLL_S = 0.2  # seconds between attempts while waiting for the lock
#: A lock held with no readable holder may be ``holder()`` peeking (a shared lock for microseconds) or a writer
#: between taking it and naming itself: waited for this long (seconds) even when ``wait_s`` is 0.
UNNAMED_GRACE_S = 1.0
LOG_WAIT_EVERY_S = 30.0  # seconds between "still waiting" log lines


@dataclass(frozen=True)
class LockHolder:
    """The process holding the writer lock: ``command`` is the batchlabel subcommand (``run``, ``watch``, ...),
    ``started_at`` unix seconds. Fields read from a file being written may be missing (``pid`` None)."""

    pid: int | None
    command: str
    host: str = ""
    started_at: float | None = None

    @property
    def is_daemon(self) -> bool:
        return self.command in DAEMON_COMMANDS

    def describe(self) -> str:
        """E.g. ``batchlabel watch (pid 4242 on host1, since 2026-12-04 16:31:02 UTC)``."""
        where = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        if self.host and self.host != socket.gethostname():
            where += f" on {self.host}"
        if self.started_at is not None:
            where += ", since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started_at))
        return f"batchlabel {self.command} ({where})"


class WriterLockBusyError(Exception):
    """Another process holds the writer lock of this cache folder. ``holder`` names it (None if unreadable)."""

    def __init__(self, path: Path, holder: LockHolder | None) -> None:
        self.path = path
        self.holder = holder
        who = holder.describe() if holder is not None else "another batchlabel process"
        super().__init__(f"{who} is writing to this cache folder ({path.parent}; lock file {path})")


def lock_path(config: Config) -> Path:
    """``<cache.dir>/writer.lock``."""
    return config.cache.dir / LOCK_FILE_NAME


def _read_holder(fd: int) -> LockHolder | None:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, started = data.get("pid"), data.get("started_at")
    return LockHolder(pid=pid if isinstance(pid, int) else None, command=str(data.get("command") or "?"),
                      host=str(data.get("host") or ""),
                      started_at=float(started) if isinstance(started, (int, float)) else None)


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(config: Config) -> LockHolder | None:
    """Who holds the writer lock now (None: nobody; a dead holder's stale file counts as nobody). Never waits."""
    path = lock_path(config)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):  # free: nobody writes (the shared lock is dropped at once)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd) or LockHolder(pid=None, command="?")
    finally:
        os.close(fd)


@contextmanager
def acquire(config: Config, *, command: str, wait_s: float = 0.0,
            should_stop_waiting: Callable[[LockHolder | None], bool] | None = None,
            clock: Callable[[], float] = time.monotonic) -> Iterator[LockHolder]:
    """Hold the writer lock of ``config.cache.dir`` for the block (created with its folder when missing).

    Args:
        config: the validated config (``cache.dir``).
        command: the subcommand taking it (``run``, ``watch``, ``up``, ``encode``, ``train``), written for others.
        wait_s: wait up to this many seconds for the holder to finish (0: do not wait), logging who is waited for.
        should_stop_waiting: called with the holder on every attempt; True gives up at once.
        clock: monotonic seconds; injectable.

    Raises:
        WriterLockBusyError: the lock is still held when the wait ends (names the holder).
    """
    path = lock_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = clock()
        deadline = started + max(0.0, wait_s)
        next_log = started
        while not _try_lock(fd, fcntl.LOCK_EX):
            other = _read_holder(fd)
            unnamed_grace = other is None and clock() < started + UNNAMED_GRACE_S
            if not unnamed_grace and (clock() >= deadline
                                      or (should_stop_waiting is not None and should_stop_waiting(other))):
                raise WriterLockBusyError(path, other)
            if other is not None and clock() >= next_log:
                left = "until it stops" if math.isinf(deadline) else f"up to {max(0.0, deadline - clock()):.0f} s more"
                log.warning("waiting for %s to finish writing to %s (%s)", other.describe(), path.parent, left)
                next_log = clock() + LOG_WAIT_EVERY_S
            time.sleep(POLL_S)
        me = LockHolder(pid=os.getpid(), command=command, host=socket.gethostname(), started_at=time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode("utf-8"), 0)
        log.debug("writer lock %s taken by %s", path, me.describe())
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # a reader between now and the unlock sees "pid unknown", never a stale name
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
