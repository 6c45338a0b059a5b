"""The short version of ``benchmarks/faults_load.py`` (issue 12): a few seconds of concurrent clients mixing valid
clicks with every hostile kind against the real ``batchlabel serve`` process. Pass/fail on correctness only (no 5xx,
no reset connection, bounded memory), never on timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_hostile_load_gets_no_5xx_no_resets_and_flat_memory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "faults_load.py"), "--clients", "4", "--duration-s", "6",
         "--damage-every-s", "1.5"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads(completed.stdout)
    assert figures["requests"] > 20
    assert figures["server_errors_5xx"] == 0, figures["by_kind"]
    assert figures["connection_resets"] == 0
    assert figures["connections_opened"] == 4  # every client kept its one keep-alive connection
    assert set(figures["by_kind"]) >= {"cat.jpg", "x_400_digits", "deep_nesting", "unknown_label"}
    assert sum(figures["store_damage_injected"].values()) >= 1
    rss = figures["server_rss_mb"]
    assert rss["last_s_avg"] - rss["first_s_avg"] < 200
