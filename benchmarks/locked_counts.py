"""Smart-tool clicks while another process holds the lock of ``interactive-requests.sqlite3`` (issue 21, case 6).

Starts the real ``batchlabel serve`` (LiteMedSAM real weights, box prompts; the setup of
``benchmarks/faults_load.py``), answers one click to encode the image and create the counts file, then sends
``--clicks`` concurrent clicks (one connection each) twice: while a second process holds the file's write lock
(``BEGIN EXCLUSIVE``), and after it let go. Prints one JSON object: per phase the statuses and the click latencies
(median, worst), and the counts the file holds afterwards. Usage:
``.venv/bin/python benchmarks/locked_counts.py [--clicks 8]``. To measure another checkout's ``batchlabel``, run from
that checkout's folder with ``PYTHONPATH=<that checkout>:<this one>`` (the server runs ``python -m batchlabel``, which
puts the current folder first).
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.faults_load import _box, _free_port, _start_server, body, prepare

_LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("COMMIT")
"""


def _click(port: int, task_id: int) -> tuple[int, float]:
    """One box click on the cat: (status, seconds)."""
    payload = body("cat.jpg", [_box()])
    payload["tasks"][0]["id"] = task_id
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


def _phase(port: int, clicks: int, first_task: int) -> dict[str, Any]:
    with ThreadPoolExecutor(clicks) as pool:
        answers = list(pool.map(lambda i: _click(port, first_task + i), range(clicks)))
    latencies = [seconds for _, seconds in answers]
    statuses: dict[str, int] = {}
    for status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"statuses": statuses, "median_s": round(statistics.median(latencies), 3),
            "worst_s": round(max(latencies), 3)}


def run(*, clicks: int) -> dict[str, Any]:
    import batchlabel

    with tempfile.TemporaryDirectory(prefix="locked-counts-") as tmp:
        work = Path(tmp)
        port = _free_port()
        config = prepare(work, port)
        log_path = work / "serve.log"
        server = _start_server(config, port, log_path)
        try:
            warm = _click(port, 1)  # encodes the cat and creates the counts file
            counts_file = work / "cache" / "interactive-requests.sqlite3"
            deadline = time.monotonic() + 30
            while not counts_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(counts_file)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            assert locker.stdout is not None and locker.stdin is not None
            assert locker.stdout.readline().strip() == "locked"
            locked = _phase(port, clicks, 100)
            locker.stdin.close()
            locker.wait(timeout=30)
            unlocked = _phase(port, clicks, 200)
            time.sleep(2.0)  # the writer thread's last batch
        finally:
            server.terminate()
            server.wait(timeout=60)
        with sqlite3.connect(counts_file) as connection:
            rows = connection.execute("SELECT task_id, requests FROM interactive_requests").fetchall()
        log_text = log_path.read_text(errors="replace")
    return {
        "batchlabel": str(Path(batchlabel.__file__).parent.parent),
        "machine": platform.processor() or platform.machine(),
        "clicks_per_phase": clicks,
        "warm_click": {"status": warm[0], "seconds": round(warm[1], 3)},
        "locked": locked,
        "unlocked": unlocked,
        "counted_tasks": {"warm": sum(1 for t, _ in rows if t == 1),
                          "locked_phase": sum(1 for t, _ in rows if 100 <= t < 200),
                          "unlocked_phase": sum(1 for t, _ in rows if t >= 200)},
        "lock_warnings_in_log": log_text.count("database is locked"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(run(clicks=args.clicks), indent=2))


if __name__ == "__main__":
    main()
