"""How fast ``batchlabel report`` reads a project: a synthetic JSON export (640x480 PNGs, brush + rectangle
pre-annotations, reviewed annotations with one object moved), the collector over it, tasks per second and peak RSS.

    .venv/bin/python benchmarks/report.py --tasks 300 --objects 3
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from batchlabel.dataset.convert import TaskConverter
from batchlabel.dataset.ls_export import iter_export_tasks
from batchlabel.report.metrics import ReportCollector, report_json
from batchlabel.sync.client import image_url
from batchlabel.sync.label_config import ControlNames
from batchlabel.sync.results import object_results

LABELS = ["cat", "person"]
NAMES = ControlNames(image="image", keypoint=None, rectangle="rect", polygon=None, brush="brush")


def _disc(height: int, width: int, cx: int, cy: int, r: int) -> np.ndarray:
    ys, xs = np.ogrid[:height, :width]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def write_export(root: Path, tasks: int, objects: int, *, size: tuple[int, int] = (480, 640)) -> Path:
    """``tasks`` tasks sharing one image file; each has a prediction and an annotation (the last object moved)."""
    height, width = size
    rng = np.random.default_rng(0)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "img.png")
    path = root / "export.json"
    with path.open("w") as handle:
        handle.write("[")
        for index in range(tasks):
            predicted, final = [], []
            for k in range(objects):
                cx, cy = int(rng.integers(80, width - 80)), int(rng.integers(80, height - 80))
                mask = _disc(height, width, cx, cy, 60)
                label = LABELS[k % 2]
                predicted += object_results(mask, label=label, outputs=("brush", "rectangle"), names=NAMES,
                                            score=0.9)
                moved = _disc(height, width, cx + 15, cy, 60) if k == objects - 1 else mask
                final += object_results(moved, label=label, outputs=("brush",), names=NAMES)
            prediction = {"id": index + 1, "result": predicted, "score": 0.9, "model_version": "bench"}
            task = {"id": index + 1, "project": 1, "data": {"image": image_url("img.png")}, "predictions": [prediction],
                    "annotations": [{"id": index + 1, "result": final, "lead_time": 12.0, "was_cancelled": False,
                                     "parent_prediction": index + 1, "prediction": prediction}]}
            handle.write(("," if index else "") + json.dumps(task))
        handle.write("]")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--objects", type=int, default=3, help="objects per task")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        export = write_export(root, args.tasks, args.objects)
        converter = TaskConverter(LABELS, root)
        started = time.perf_counter()
        data = ReportCollector(converter, LABELS).add_tasks(iter_export_tasks(export))
        elapsed = time.perf_counter() - started
        report: dict[str, Any] = report_json(data, manual_s_per_object=80.0, baseline_source="bench", source={})
        size_mb = export.stat().st_size / 1e6
    print(json.dumps({
        "tasks": args.tasks, "objects_per_task": args.objects, "image": "640x480", "export_mb": round(size_mb, 1),
        "seconds": round(elapsed, 2), "tasks_per_s": round(args.tasks / elapsed, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "edited": sum(row["edited"] for row in report["labels"].values()),
        "accepted": sum(row["accepted"] for row in report["labels"].values()),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
