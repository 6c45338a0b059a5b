"""What ``batchlabel status`` and ``run`` pay for the issue-21 bookkeeping: counting deleted files that keep a task
(one ``stat`` per journaled task, :func:`batchlabel.ingest.missing.missing_records`) and the writer lock
(:mod:`batchlabel.ingest.writer_lock`: take and release, ``holder`` read). Prints JSON.

    .venv/bin/python benchmarks/ingest_missing.py --files 20000 --deleted-fraction 0.1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from batchlabel.config import parse_config
from batchlabel.ingest.journal import Journal
from batchlabel.ingest.missing import missing_records
from batchlabel.ingest.writer_lock import acquire, holder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000, help="journaled files with a task")
    parser.add_argument("--deleted-fraction", type=float, default=0.1, help="fraction of them deleted from disk")
    parser.add_argument("--lock-repeats", type=int, default=200, help="acquire/release and holder() rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        raw = {"storage": {"root": str(root)}, "label_studio": {"url": "http://x", "labels": ["cat"]},
               "cache": {"dir": str(base / "cache")}}
        config = parse_config(raw, source="bench.yaml", base_dir=base)
        deleted_every = max(1, round(1 / args.deleted_fraction)) if args.deleted_fraction > 0 else 0
        with Journal(config.journal_path) as journal:
            for index in range(args.files):
                rel = f"d{index % 100}/img{index:07d}.png"
                if not deleted_every or index % deleted_every:
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    (root / rel).write_bytes(b"")
                journal.mark_discovered(rel, f"{index:064x}")
                journal.mark_pushed(rel, index + 1)
            started = time.perf_counter()
            missing = missing_records(config, journal)
            missing_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(args.lock_repeats):
            with acquire(config, command="bench"):
                pass
        acquire_ms = (time.perf_counter() - started) / args.lock_repeats * 1000
        started = time.perf_counter()
        for _ in range(args.lock_repeats):
            holder(config)
        holder_ms = (time.perf_counter() - started) / args.lock_repeats * 1000
    print(json.dumps({"files": args.files, "deleted": len(missing), "missing_records_s": round(missing_s, 3),
                      "missing_records_us_per_file": round(missing_s / max(1, args.files) * 1e6, 2),
                      "lock_acquire_release_ms": round(acquire_ms, 3), "holder_ms": round(holder_ms, 3)}, indent=2))


if __name__ == "__main__":
    main()
