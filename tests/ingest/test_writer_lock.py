"""The cache folder's writer lock with real processes: a holder is named, a dead holder (SIGKILL) never blocks, a
waiter takes the lock once the holder is gone. The CLI behaviours (run + run, watch + run) are in
tests/commands/test_writer_lock_cli.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchlabel.config import Config, parse_config
from batchlabel.ingest.writer_lock import WriterLockBusyError, acquire, holder, lock_path


def _config(tmp_path: Path) -> Config:
    raw = {"storage": {"root": "data"}, "label_studio": {"url": "http://x", "labels": ["cat"]},
           "cache": {"dir": str(tmp_path / "c")}}
    return parse_config(raw, source="c.yaml", base_dir=tmp_path)


def _hold_in_child(tmp_path: Path, command: str) -> subprocess.Popen:
    """A real second process that takes the lock as ``command``, prints "held" and sleeps until killed."""
    script = textwrap.dedent(f"""
        import sys, time
        from batchlabel.config import parse_config
        from batchlabel.ingest.writer_lock import acquire
        raw = {{"storage": {{"root": "data"}}, "label_studio": {{"url": "http://x", "labels": ["cat"]}},
               "cache": {{"dir": {str(tmp_path / "c")!r}}}}}
        config = parse_config(raw, source="c.yaml", base_dir={str(tmp_path)!r})
        with acquire(config, command={command!r}):
            print("held", flush=True)
            time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_holder_is_named_and_a_killed_holder_never_blocks(tmp_path):
    config = _config(tmp_path)
    assert holder(config) is None  # no lock file yet
    child = _hold_in_child(tmp_path, "watch")
    try:
        seen = holder(config)
        assert seen is not None and (seen.pid, seen.command, seen.is_daemon) == (child.pid, "watch", True)
        assert f"batchlabel watch (pid {child.pid}" in seen.describe()
        with pytest.raises(WriterLockBusyError) as busy, acquire(config, command="run"):
            pytest.fail("took a lock another process holds")
        assert busy.value.holder == seen and str(lock_path(config)) in str(busy.value)
    finally:
        child.send_signal(signal.SIGKILL)  # no cleanup: the stale file still names it
        child.wait(30)
    assert str(child.pid) in lock_path(config).read_text()
    assert holder(config) is None  # the kernel released the flock of the dead process
    with acquire(config, command="run") as me:
        assert me.pid == os.getpid() and holder(config) == me  # named to any reader, this process included
    assert holder(config) is None and lock_path(config).read_text() == ""


def test_a_waiter_takes_the_lock_when_the_holder_ends_and_stops_waiting_when_told(tmp_path):
    config = _config(tmp_path)
    child = _hold_in_child(tmp_path, "run")
    try:
        with pytest.raises(WriterLockBusyError), acquire(config, command="run", wait_s=60.0,
                                                          should_stop_waiting=lambda h: h is not None):
            pytest.fail("took a lock another process holds")
        killer = subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {child.pid}"])
        with acquire(config, command="run", wait_s=60.0) as me:
            assert me.command == "run" and child.poll() is not None
        killer.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)
