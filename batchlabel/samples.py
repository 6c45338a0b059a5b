"""``python -m batchlabel.samples CONFIG``: put sample images into the config's document root (for ``make run``).

The images ship inside the scikit-image wheel (a cat, an astronaut, coffee, a rocket, a motorcycle...), so this works
on a machine without internet. Existing files are left alone; nothing is written outside ``storage.root``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from PIL import Image

from batchlabel.config import ConfigError, load_config

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
