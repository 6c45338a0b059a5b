"""What the export nesting limit costs: a synthetic Label Studio JSON export (N images x M brush masks, the dataset
benchmark's) read task by task with ``iter_export_tasks`` (ijson behind the nesting scan) and with bare
``ijson.items``, best of ``--repeats``; then the time and peak RSS of refusing 200 KB of nesting inside a task and
at the top level. Prints one JSON object.

    .venv/bin/python benchmarks/export_read.py [--images 2000] [--masks 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from dataset import write_project  # noqa: E402  (the dataset benchmark's export writer)

from batchlabel.dataset.ls_export import ExportFormatError, iter_export_tasks  # noqa: E402


def _best_s(read: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        read()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--masks", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import ijson

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        export = folder / "export.json"
        sizes = write_project(folder / "root", export, images=args.images, masks=args.masks, height=480, width=640,
                              labels=["cat", "person"])

        def bare() -> int:
            with export.open("rb") as handle:
                return sum(1 for _ in ijson.items(handle, "item", use_float=True))

        def guarded() -> int:
            return sum(1 for _ in iter_export_tasks(export))

        assert bare() == guarded() == args.images
        bare_s, guarded_s = _best_s(bare, args.repeats), _best_s(guarded, args.repeats)
        refusals = {}
        depth = 100_000
        deep_files = {"inside_a_task": b'[{"id": 1, "data": ' + b"[" * depth + b"]" * depth + b"}]",
                      "top_level": b"[" * depth + b"]" * depth}
        for name, data in deep_files.items():
            path = folder / f"{name}.json"
            path.write_bytes(data)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            try:
                list(iter_export_tasks(path))
                message = "not refused"
            except ExportFormatError as error:
                message = str(error).split(": ", 1)[1]
            refusals[name] = {"file_kb": round(len(data) / 1024), "seconds": round(time.perf_counter() - started, 4),
                              "peak_rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                           - rss_before) / 1024, 1),
                              "message": message}
    print(json.dumps({
        "images": args.images, "masks_per_image": args.masks, "export_mb": sizes["export_mb"],
        "bare_ijson_s": round(bare_s, 3), "iter_export_tasks_s": round(guarded_s, 3),
        "nesting_scan_overhead_s": round(guarded_s - bare_s, 3),
        "scan_mb_per_s": round(sizes["export_mb"] / max(guarded_s - bare_s, 1e-9), 1),
        "deep_refusals": refusals,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
