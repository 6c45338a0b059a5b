"""A real two-node Ray cluster on this machine for the tests, started the way a user starts one (``ray start``).

The head runs in the background (``ray start --head``); the second node runs ``ray start --address=... --block`` in
its own session, so :meth:`TwoNodeCluster.kill_second_node` can take it down at once (SIGKILL) as a lost node
would go. Own GCS port, own temp dir, small object stores; :meth:`TwoNodeCluster.stop` kills both nodes' process
trees (and nothing else).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
REPO_ROOT = Path(__file__).resolve().parents[2]
OBJECT_STORE_BYTES = 80_000_000  # the smallest Ray accepts is ~75 MB; rows here are paths and hashes
NODE_START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_env() -> dict[str, str]:
    """The environment for ``ray start`` and the drivers: this checkout first on the path (actors import it), no
    usage stats, and a lost node noticed in about two seconds instead of Ray's default half minute."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_health_check_period_ms": "500",
        "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "4",
        "PYTHONUNBUFFERED": "1",
    }


class TwoNodeCluster:
    """``ray start --head --num-cpus=1`` plus ``ray start --address=HEAD --num-cpus=1`` on this machine, each with
    ``--block`` in its own session so that each node is one process tree this harness can kill (no ``ray stop``,
    which would stop every Ray on the machine)."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = cluster_env()
        self.head: subprocess.Popen[bytes] | None = None
        self.second: subprocess.Popen[bytes] | None = None

    def start(self) -> TwoNodeCluster:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.head = self._node(
            "head", "--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        )
        self._wait_for_nodes(1, self.head)
        self.start_second_node()
        return self

    def start_second_node(self) -> None:
        self.second = self._node("second", f"--address={self.address}")
        self._wait_for_nodes(2, self.second)

    def _node(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        log = open(self.temp_dir / f"{name}-node.log", "ab")  # noqa: SIM115 - the node outlives this call
        return subprocess.Popen(
            [RAY, "start", *options, "--num-cpus=1", f"--object-store-memory={OBJECT_STORE_BYTES}", "--block"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _wait_for_nodes(self, count: int, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while self.alive_nodes() < count:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"Ray node {count} did not come up; see the logs in {self.temp_dir}")
            time.sleep(0.5)

    def alive_nodes(self) -> int:
        """Nodes the head counts as alive (from ``ray status``; 0 while the head is not up)."""
        status = subprocess.run([RAY, "status", f"--address={self.address}"], env=self.env, capture_output=True,
                                text=True, timeout=60)
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))

    def kill_second_node(self) -> None:
        """SIGKILL the second node's whole process tree (raylet, its workers and agents): a lost machine."""
        _kill_tree(self.second)

    def stop(self) -> None:
        _kill_tree(self.second)
        _kill_tree(self.head)


def _kill_tree(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` and every descendant (Ray's workers leave the node's process group, not its tree)."""
    import psutil

    if process is None or process.poll() is not None:
        return
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(tree, timeout=30)
    process.wait(timeout=30)
