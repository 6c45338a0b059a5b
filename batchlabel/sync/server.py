"""Run a real Label Studio 1.23 headless on loopback: the embedded server of ``batchlabel up`` and of the tests.

One implementation serves both. Label Studio lives in its own virtual environment (it pins Django, numpy and pandas);
batchlabel only starts its ``label-studio`` executable and talks to it over HTTP.

Facts this relies on (see ``shared/docs/label-studio.md``):
- a first start on a new data dir migrates the database (30-50 s); starting from a copy of an initialised data dir
  takes about 6 s and keeps users and tokens (the Django secret key lives in ``<data_dir>/.env``);
- if the port is busy Label Studio silently moves to the next one, so the log line naming the port is read (and a
  configured port another program holds is replaced by a free one before the start);
- it runs in its own session, so it outlives a batchlabel killed with SIGKILL: ``PID_FILE`` in the data dir (pid,
  owner pid, port, command without secrets) lets the next start find it, check ``/proc/<pid>/cmdline`` names this
  data dir, and stop it;
- legacy token auth must be enabled at the first start; ``USE_DEFAULT_BANNED_SUBNETS=false`` lets it call an ML
  backend on 127.0.0.1; analytics and version checks are turned off so nothing goes out at start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from batchlabel.config import label_studio_venv_override, user_cache_home

if TYPE_CHECKING:
    from batchlabel.config import Config

log = logging.getLogger(__name__)

LABEL_STUDIO_VERSION = "1.23.2"
DEFAULT_START_TIMEOUT_S = 180.0  # a first start migrates for up to ~50 s on 2 cores; generous for loaded CI machines
STOP_TIMEOUT_S = 15.0
HEALTH_POLL_S = 0.25
CREDENTIALS_FILE = "batchlabel-credentials.json"
#: In the data dir while batchlabel runs its Label Studio: {"pid", "owner_pid", "port", "command"} (see
#: :meth:`EmbeddedLabelStudio._take_over_earlier_server`).
PID_FILE = "batchlabel-label-studio.pid.json"
_READY_LINE = re.compile(r"Starting development server at http://[^:]+:(\d+)/")


class LabelStudioStartError(RuntimeError):
    """Label Studio could not be started; the message names the log file to read."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on ``host:port`` (a bind with ``SO_REUSEADDR`` succeeds, as Label Studio's own bind would:
    connections of a server stopped a moment ago in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def process_alive(pid: int) -> bool:
    """``pid`` runs (a zombie nobody reaped yet does not: a container's init may never reap an orphan)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def may_own(pid: int, path: Path) -> bool:
    """Whether process ``pid`` may have created ``path`` (a folder named after its pid): it runs and did not start
    after the folder was last changed (a pid reused by a later process does not own an older folder). Without
    ``/proc``, whether it runs."""
    if not process_alive(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        started = boot + start_ticks / os.sysconf("SC_CLK_TCK")
        return started <= path.stat().st_mtime + 1.0  # btime has whole seconds
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def _command_line(pid: int) -> list[str] | None:
    """``pid``'s arguments from ``/proc`` (None: gone, or no ``/proc`` on this system)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def default_venv() -> Path:
    """Label Studio's venv: ``$BATCHLABEL_LABEL_STUDIO_VENV`` or ``.venv-ls`` in the source checkout."""
    return label_studio_venv_override() or Path(__file__).resolve().parents[2] / ".venv-ls"


def label_studio_executable(venv: Path) -> Path:
    executable = venv / "bin" / "label-studio"
    if not executable.exists():
        raise LabelStudioStartError(
            f"Label Studio is not installed at {executable}. Run `make install` (it creates {venv} with "
            f"label-studio=={LABEL_STUDIO_VERSION}), or set label_studio.url to an existing server."
        )
    return executable


@dataclass(frozen=True)
class Credentials:
    """The admin account of an embedded Label Studio. ``api_key`` is a legacy token (plain ``Token`` auth)."""

    username: str
    password: str
    api_key: str

    @classmethod
    def generate(cls, username: str = "admin@example.com") -> Credentials:
        return cls(username=username, password=secrets.token_hex(8), api_key=secrets.token_hex(20))

    def save(self, path: Path) -> None:
        """Write with mode 0600 (atomically) so only the owner can read the password and token."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"username": self.username, "password": self.password, "api_key": self.api_key}, handle)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        data = json.loads(path.read_text())
        return cls(username=data["username"], password=data["password"], api_key=data["api_key"])


@dataclass
class EmbeddedLabelStudio:
    """A Label Studio server process on 127.0.0.1.

    Args:
        data_dir: Label Studio's data dir (SQLite database, media, secret key). Created on first start.
        document_root: the local-files document root (``/data/local-files/?d=<relative path>`` is served from here).
        credentials: the admin account; created at the first start of ``data_dir``.
        port: a port to use; ``None`` picks a free one at each start.
        venv: Label Studio's virtual environment.
        template_dir: an initialised data dir to copy when ``data_dir`` does not exist yet (skips the migrations);
            its credentials must equal ``credentials``. Made on demand by :func:`ensure_template`.
    """

    data_dir: Path
    document_root: Path
    credentials: Credentials
    port: int | None = None
    venv: Path = field(default_factory=default_venv)
    template_dir: Path | None = None
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _bound_port: int | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> EmbeddedLabelStudio:
        """The embedded server a config describes (``label_studio.url: null``), with credentials kept in its data dir.

        The credentials are generated at the first start (or taken from ``label_studio.api_key`` /
        ``label_studio.embedded.password`` when set) and stored with mode 0600 beside the database.
        """
        embedded = config.label_studio.embedded
        data_dir = config.label_studio_data_dir
        credentials_path = data_dir / CREDENTIALS_FILE
        if credentials_path.exists():
            credentials = Credentials.load(credentials_path)
        else:
            generated = Credentials.generate(embedded.username)
            credentials = Credentials(
                username=embedded.username,
                password=embedded.password or generated.password,
                api_key=config.label_studio.api_key or generated.api_key,
            )
        return cls(
            data_dir=data_dir,
            document_root=config.storage.root,
            credentials=credentials,
            port=embedded.port,
            venv=embedded.venv or default_venv(),
        )

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("Label Studio is not running")
        return f"http://127.0.0.1:{self._bound_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "label-studio.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LABEL_STUDIO_")}
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(self.document_root),
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            USE_DEFAULT_BANNED_SUBNETS="false",
            LATEST_VERSION_CHECK="false",
            COLLECT_ANALYTICS="false",
            PYTHONUNBUFFERED="1",
        )
        return env

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    def _serves_this_data_dir(self, pid: int) -> bool:
        """``pid`` is a Label Studio started on this data dir (its command line says ``--data-dir <data_dir>``)."""
        args = _command_line(pid)
        if not args or not any(Path(arg).name == "label-studio" for arg in args):
            return False
        pairs = zip(args, args[1:], strict=False)
        return any(flag == "--data-dir" and value == str(self.data_dir) for flag, value in pairs)

    def _take_over_earlier_server(self) -> None:
        """Stop the Label Studio an earlier batchlabel left running on this data dir, found by :data:`PID_FILE`.

        ``batchlabel up`` killed with SIGKILL (OOM, a closed terminal) cannot stop its server, which runs in its own
        session; it kept the port, and the next start moved to another one. The file's pid is trusted only when its
        ``/proc`` command line is Label Studio on this data dir (a reused pid is never signalled); a stale file is
        removed.

        Raises:
            LabelStudioStartError: that server belongs to a batchlabel process still running (two ``up`` on one data
                dir): the message names both pids.
        """
        try:
            recorded = json.loads(self.pid_path.read_text(encoding="utf-8"))
            pid, owner, port = int(recorded["pid"]), int(recorded["owner_pid"]), int(recorded["port"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s: unreadable (%s); removed", self.pid_path, error)
            self.pid_path.unlink(missing_ok=True)
            return
        if not self._serves_this_data_dir(pid):
            log.info("%s: pid %d is no longer Label Studio on %s; removed", self.pid_path, pid, self.data_dir)
            self.pid_path.unlink(missing_ok=True)
            return
        if owner != os.getpid() and may_own(owner, self.pid_path):  # not a pid reused since the file was written
            raise LabelStudioStartError(
                f"the Label Studio of {self.data_dir} (pid {pid}, port {port}) belongs to batchlabel process {owner}, "
                "which is still running: stop that one first (Ctrl-C), or use another cache.dir"
            )
        log.warning("stopping Label Studio pid %d on port %d, left running by an earlier batchlabel (pid %d) that "
                    "did not stop it", pid, port, owner)
        _stop_process_group(pid, port)
        self.pid_path.unlink(missing_ok=True)

    def _write_pid_file(self, process: subprocess.Popen[bytes], port: int, command: list[str]) -> None:
        shown = [arg for arg in command if not arg.startswith(("--password=", "--user-token="))]
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": process.pid, "owner_pid": os.getpid(), "port": port, "command": shown}))
        os.replace(tmp, self.pid_path)

    def _port_to_use(self) -> int:
        """The configured port, or a free one when none is configured or another program holds it (warned)."""
        if self.port is None:
            return find_free_port()
        if port_is_free(self.port):
            return self.port
        port = find_free_port()
        log.warning("port %d is taken by another program; Label Studio starts on port %d instead "
                    "(label_studio.embedded.port sets it)", self.port, port)
        return port

    def start(self) -> None:
        """Start the server and wait until ``/health/`` answers UP. Idempotent while running.

        A server an earlier batchlabel left running on this data dir is stopped first; a configured port another
        program holds is replaced by a free one (:attr:`url` says which).
        """
        if self.running:
            return
        executable = label_studio_executable(self.venv)
        self._take_over_earlier_server()
        self.document_root.mkdir(parents=True, exist_ok=True)
        first_start = not (self.data_dir / "label_studio.sqlite3").exists()
        if first_start and self.template_dir is not None and (self.template_dir / "label_studio.sqlite3").exists():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            shutil.copytree(self.template_dir, self.data_dir, symlinks=True)
            first_start = False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / CREDENTIALS_FILE).exists():
            self.credentials.save(self.data_dir / CREDENTIALS_FILE)
        port = self._port_to_use()
        command = [
            str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
            "--data-dir", str(self.data_dir), f"--username={self.credentials.username}",
            f"--password={self.credentials.password}", f"--user-token={self.credentials.api_key}",
            "--enable-legacy-api-token",
        ]
        log.info("starting Label Studio on 127.0.0.1:%d (data dir %s%s)", port, self.data_dir,
                 ", first start: migrating the database" if first_start else "")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log_handle = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                command, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._environment(), cwd=self.data_dir, start_new_session=True,
            )
        finally:
            log_handle.close()
        self._write_pid_file(self._process, port, command)
        self._bound_port = self._wait_until_healthy(port, log_offset=log_offset)

    def _read_bound_port(self, log_offset: int) -> int | None:
        with contextlib.suppress(OSError), self.log_path.open("rb") as handle:
            handle.seek(log_offset)
            matches = _READY_LINE.findall(handle.read().decode("utf-8", "replace"))
            if matches:
                return int(matches[-1])
        return None

    def _wait_until_healthy(self, port: int, *, log_offset: int) -> int:
        deadline = time.monotonic() + self.start_timeout_s
        started = time.monotonic()
        bound: int | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                self._process = None
                raise LabelStudioStartError(f"Label Studio exited with code {code} during start; see {self.log_path}")
            if bound is None:
                bound = self._read_bound_port(log_offset)
                if bound is not None and bound != port:  # taken between our check and its bind: it moved on
                    log.warning("port %d was taken meanwhile; Label Studio moved to port %d", port, bound)
                    self._write_pid_file(self._process, bound, self._process.args)  # type: ignore[arg-type]
            if bound is not None:
                with contextlib.suppress(httpx.HTTPError):
                    response = httpx.get(f"http://127.0.0.1:{bound}/health/", timeout=2.0)
                    if response.status_code == 200 and response.json().get("status") == "UP":
                        log.info("Label Studio is up at http://127.0.0.1:%d after %.1f s", bound,
                                 time.monotonic() - started)
                        return bound
            time.sleep(HEALTH_POLL_S)
        self.stop()
        raise LabelStudioStartError(f"Label Studio did not become healthy within {self.start_timeout_s:.0f} s; "
                                    f"see {self.log_path}")

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after a grace period). Idempotent."""
        process, self._process = self._process, None
        self._bound_port = None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
            log.info("Label Studio stopped")
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedLabelStudio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_process_group(pid: int, port: int) -> None:
    """SIGTERM to the process group ``pid`` leads (a Label Studio started in its own session), SIGKILL after
    :data:`STOP_TIMEOUT_S`; returns once ``pid`` is gone and ``port`` is free (the group's other processes may hold
    the listening socket a moment longer). For a server this process did not start (no ``Popen``)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
            if not process_alive(pid) and port_is_free(port):
                return
            time.sleep(HEALTH_POLL_S)
    raise LabelStudioStartError(f"Label Studio pid {pid} (port {port}) did not stop after SIGKILL")


TEMPLATE_CREDENTIALS = Credentials(
    username="admin@example.com", password="batchlabel-test", api_key="batchlabel-test-token"
)


def default_template_dir() -> Path:
    return user_cache_home() / "batchlabel" / f"label-studio-template-{LABEL_STUDIO_VERSION}"


def ensure_template(template_dir: Path | None = None, *, venv: Path | None = None,
                    credentials: Credentials = TEMPLATE_CREDENTIALS) -> Path:
    """An initialised (migrated) Label Studio data dir to copy for fast starts; built once, under a file lock.

    Its admin account is ``credentials`` (the tests' fixed account): never use a template for a user-facing server.
    """
    template_dir = template_dir or default_template_dir()
    marker = template_dir / ".batchlabel-template-ok"
    if marker.exists():
        return template_dir
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    with (template_dir.parent / f".{template_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return template_dir
        building = template_dir.with_name(template_dir.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        log.info("building a Label Studio template data dir (one-time database migration, ~40 s)")
        server = EmbeddedLabelStudio(data_dir=building, document_root=building / "root", credentials=credentials,
                                     venv=venv or default_venv())
        with server:
            pass
        (building / "label-studio.log").unlink(missing_ok=True)
        shutil.rmtree(template_dir, ignore_errors=True)
        os.replace(building, template_dir)
        marker.write_text(LABEL_STUDIO_VERSION)
    return template_dir


def main() -> int:
    """``python -m batchlabel.sync.server TEMPLATE_DIR``: build the test template ahead of time (used by make)."""
    logging.basicConfig(level=logging.INFO)
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(ensure_template(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
