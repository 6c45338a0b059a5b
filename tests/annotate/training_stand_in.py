"""A stand-in for ``batchlabel train CONFIG --json`` in tests of the background launcher: a tiny real process that
waits for a gate file (so tests never depend on timing), prints progress on stderr and its report on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

#: argv: the gate file, a folder counting the runs. Reports its niceness, OMP_NUM_THREADS and start/end times.
STAND_IN = """
import json, os, sys, time
gate, runs = sys.argv[1], sys.argv[2]
started = time.time()
while not os.path.exists(gate):
    time.sleep(0.02)
count = len(os.listdir(runs))
open(os.path.join(runs, str(count)), "w").close()
print("epoch 1/1 100%", file=sys.stderr)
print("some line first")
print(json.dumps({"model_version": f"stand-in-{count}", "nice": os.nice(0), "pid": os.getpid(),
                  "omp": os.environ.get("OMP_NUM_THREADS"), "started": started, "ended": time.time()}, indent=2))
sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
"""


def stand_in_command(folder: Path) -> tuple[list[str], Path]:
    """``(argv, gate)``: the stand-in's command line; it finishes once ``gate`` exists."""
    gate = folder / "gate"
    runs = folder / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-c", STAND_IN, str(gate), str(runs)], gate
