"""Background training: ``batchlabel train CONFIG --json`` as a separate, low-priority process, one per project.

``serve`` (Label Studio's "Start training", annotation webhooks) and ``watch`` (the reviewed count) ask for a
training with :meth:`BackgroundTrainer.request`; it never trains in the caller's thread or process::

    request(reason) -> "started"   a worker thread starts the child now
                    -> "queued"    one is running: one follow-up starts when it ends (the newer reviews)
                    -> "coalesced" one is running and a follow-up is already queued: nothing more to do

The child is the CLI itself (:func:`training_command`), started with a higher ``nice`` value
(:data:`TRAINING_NICE`) and one thread per math library (:data:`SINGLE_THREAD_ENV`), so interactive clicks keep
their cores. Files, in the project's models folder (``<cache.dir>/models/<project>/``, next to the models):

- ``training.log``: the child's stderr and stdout, appended, one header line per training;
- ``training.json``: while a training runs, ``{"pid", "started" (unix s), "reason", "log"}``; removed when it ends
  (:func:`training_in_progress` reads it for ``batchlabel status``; a file whose pid is gone is stale, ignored);
- ``training.lock``: an advisory ``flock`` held while the child runs, so two processes (``serve`` and ``watch`` of
  one project) never train it at once: the second waits for the first, then runs its own (the newer reviews).

The serve log and the watch log say when a training starts and ends, with the exit code and the model version
from the child's ``--json`` report.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

#: Added to the child's niceness: the scheduler prefers the serving process's threads (and Label Studio's).
TRAINING_NICE = 10
#: One thread per math library in the child (torch reads ``OMP_NUM_THREADS`` for its intra-op pool).
SINGLE_THREAD_ENV: Mapping[str, str] = {
    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
STATUS_FILE = "training.json"
LOG_FILE = "training.log"
LOCK_FILE = "training.lock"
#: How often a worker waiting for another process's training checks the lock again (seconds).
LOCK_POLL_S = 1.0
#: How long :meth:`BackgroundTrainer.close` lets a running child end after SIGTERM before SIGKILL (seconds).
TERMINATE_GRACE_S = 10.0

STARTED, QUEUED, COALESCED = "started", "queued", "coalesced"


def child_environment(label_studio: tuple[str, str] | None) -> dict[str, str]:
    """The child's environment: this process's, plus the running embedded Label Studio's ``(url, api_key)`` when
    given (``batchlabel up``), so ``train`` attaches to it (:func:`batchlabel.config.running_label_studio_override`)
    instead of starting a second server on the same data folder."""
    from batchlabel.config import RUNNING_LABEL_STUDIO_KEY_VARIABLE, RUNNING_LABEL_STUDIO_URL_VARIABLE

    env = dict(os.environ)
    if label_studio is not None:
        env[RUNNING_LABEL_STUDIO_URL_VARIABLE], env[RUNNING_LABEL_STUDIO_KEY_VARIABLE] = label_studio
    return env


def training_command(config_path: Path, *extra: str) -> list[str]:
    """The child's argv: this interpreter running ``batchlabel train CONFIG --json`` (plus ``extra`` options)."""
    return [sys.executable, "-m", "batchlabel", "train", str(config_path), "--json", *extra]


@dataclass(frozen=True)
class TrainingInProgress:
    """A training running now: the child's ``pid``, when it ``started`` (unix seconds), why (``reason``), its log."""

    pid: int
    started: float
    reason: str
    log: str

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started, "reason": self.reason, "log": self.log}


@dataclass(frozen=True)
class TrainingOutcome:
    """How one training ended: the child's ``exit_code`` (0 trained or nothing to do, 2 refused, 1 failed, negative:
    killed by that signal), ``model_version`` and the whole ``report`` from its ``--json`` output (None when it
    printed none), its wall ``seconds`` and the ``reason`` it was started for."""

    exit_code: int
    model_version: str | None
    report: dict[str, Any] | None
    seconds: float
    reason: str


def training_in_progress(models_dir: Path) -> TrainingInProgress | None:
    """The training running for the project whose models live in ``models_dir``, or None (no status file, an
    unreadable one, or one whose process is gone)."""
    try:
        raw = json.loads((models_dir / STATUS_FILE).read_text(encoding="utf-8"))
        status = TrainingInProgress(int(raw["pid"]), float(raw["started"]), str(raw.get("reason", "")),
                                    str(raw.get("log", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from batchlabel.sync.server import process_alive

    return status if process_alive(status.pid) else None


def last_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a ``--json`` command printed last in ``text`` (the whole text, or from the last line that
    starts with ``{``), else None."""
    starts = [0] + [index + 1 for index, char in enumerate(text) if char == "\n"]
    for start in reversed(starts):
        if text.startswith("{", start):
            with contextlib.suppress(ValueError):
                value = json.loads(text[start:])
                return value if isinstance(value, dict) else None
    return None


class BackgroundTrainer:
    """Runs ``command`` (see :func:`training_command`) in the background for one project; see the module docstring.

    Args:
        models_dir: the project's models folder (status, log and lock files go there; created when needed).
        command: the child's argv.
        nice: added to the child's niceness.
        env: the child's environment (default: this process's) before :data:`SINGLE_THREAD_ENV` is applied.
        on_finished: called in the worker thread with each :class:`TrainingOutcome`.
    """

    def __init__(self, models_dir: Path, command: Sequence[str], *, nice: int = TRAINING_NICE,
                 env: Mapping[str, str] | None = None,
                 on_finished: Callable[[TrainingOutcome], None] | None = None) -> None:
        self.models_dir = models_dir
        self.command = list(command)
        self.nice = nice
        self.env = {**(os.environ if env is None else env), **SINGLE_THREAD_ENV}
        self.on_finished = on_finished
        self.outcomes: list[TrainingOutcome] = []
        self._lock = threading.Lock()
        self._queued_reason: str | None = None
        self._worker: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = threading.Event()

    def request(self, reason: str) -> str:
        """Ask for a training now (``reason`` is logged); returns :data:`STARTED`, :data:`QUEUED` or
        :data:`COALESCED` at once."""
        with self._lock:
            if self._closed.is_set():
                log.warning("training not started (%s): shutting down", reason)
                return COALESCED
            if self._worker is not None and self._worker.is_alive():
                if self._queued_reason is not None:
                    log.info("training requested (%s) while one runs and another is queued: coalesced", reason)
                    return COALESCED
                self._queued_reason = reason
                log.info("training requested (%s) while one runs: queued to start when it ends", reason)
                return QUEUED
            self._queued_reason = reason
            self._worker = threading.Thread(target=self._work, name="background-training", daemon=True)
            self._worker.start()
            return STARTED

    @property
    def busy(self) -> bool:
        """True while a training runs or waits to run."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    def wait(self, timeout_s: float) -> bool:
        """Wait until no training runs or is queued; True when idle within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            worker = self._worker
            if worker is None or not worker.is_alive():
                return True
            worker.join(max(0.0, min(0.5, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return not worker.is_alive()

    def close(self, *, grace_s: float = TERMINATE_GRACE_S) -> None:
        """Drop the queued follow-up and stop a running child (SIGTERM, then SIGKILL after ``grace_s``): ``train``
        renames a model into place only when it succeeded, so a stopped training leaves nothing half-written."""
        with self._lock:
            self._closed.set()
            self._queued_reason = None
            child = self._child
        if child is not None and child.poll() is None:
            log.info("stopping the training in progress (pid %d)", child.pid)
            child.terminate()
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
        if self._worker is not None:
            self._worker.join(grace_s + 5.0)

    def _next_reason(self) -> str | None:
        with self._lock:
            reason, self._queued_reason = self._queued_reason, None
            return reason

    def _work(self) -> None:
        while (reason := self._next_reason()) is not None:
            try:
                outcome = self._train_once(reason)
            except Exception:  # the serving process must outlive any failure to start a training
                log.exception("training (%s) could not be run", reason)
                continue
            if outcome is None:
                continue
            self.outcomes.append(outcome)
            if self.on_finished is not None:
                try:
                    self.on_finished(outcome)
                except Exception:
                    log.exception("after the training (%s)", reason)

    def _train_once(self, reason: str) -> TrainingOutcome | None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / LOCK_FILE, "a+b") as lock_file:
            if not self._acquire(lock_file, reason):
                return None
            try:
                return self._run_child(reason)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _acquire(self, lock_file: IO[bytes], reason: str) -> bool:
        """The project's training lock (False when closed while waiting for another process's training)."""
        waiting_logged = False
        while not self._closed.is_set():
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not waiting_logged:
                    other = training_in_progress(self.models_dir)
                    log.info("training (%s) waits: another process trains this project%s", reason,
                             f" (pid {other.pid})" if other else "")
                    waiting_logged = True
                self._closed.wait(LOCK_POLL_S)
        return False

    def _run_child(self, reason: str) -> TrainingOutcome | None:
        log_path = self.models_dir / LOG_FILE
        started = time.time()
        with open(log_path, "ab") as log_file:
            log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {reason}: {' '.join(self.command)}\n"
                           .encode())
            log_file.flush()
            with self._lock:
                if self._closed.is_set():
                    return None
                self._child = child = self._spawn(log_file)
            status_path = self.models_dir / STATUS_FILE
            _write_atomic(status_path, TrainingInProgress(child.pid, started, reason, str(log_path)).as_dict())
            log.info("training started (%s): pid %d, nice +%d, log %s", reason, child.pid, self.nice, log_path)
            try:
                stdout, _ = child.communicate()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    status_path.unlink()
                with self._lock:
                    self._child = None
            log_file.write(stdout)
        report = last_json_object(stdout.decode("utf-8", "replace"))
        version = report.get("model_version") if report else None
        outcome = TrainingOutcome(child.returncode, str(version) if version else None, report,
                                  round(time.time() - started, 1), reason)
        level = logging.INFO if outcome.exit_code == 0 else logging.WARNING
        meaning = {0: "ok", 2: "refused", 1: "failed"}.get(outcome.exit_code) or (
            f"killed by {_signal_name(outcome.exit_code)}" if outcome.exit_code < 0 else "crashed")
        log.log(level, "training ended (%s): exit %d (%s), model_version %s, %.1f s; log %s", reason,
                outcome.exit_code, meaning, outcome.model_version or "none", outcome.seconds, log_path)
        return outcome

    def _spawn(self, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        """The child at lower priority: through ``nice`` when there is one (set before the child's first thread),
        else re-niced right after the start."""
        nice_tool = shutil.which("nice")
        argv = [nice_tool, "-n", str(self.nice), *self.command] if nice_tool and self.nice else self.command
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                                 env=self.env, start_new_session=True)
        if not nice_tool and self.nice:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, child.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        return child


def _write_atomic(path: Path, value: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(temp, path)


def _signal_name(exit_code: int) -> str:
    """``SIGTERM`` for the exit code -15 of a child killed by that signal."""
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return f"signal {-exit_code}"
