"""A content-addressed, size-capped, multi-process-safe embedding store on disk.

Layout::

    <root>/<model_id>/p<PREPROCESSING_VERSION>/<sha256[:2]>/<sha256>.npy    float16 (1, 256, 64, 64), ~2 MiB
    <root>/<model_id>/p<PREPROCESSING_VERSION>/<sha256[:2]>/<sha256>.json   metadata (sizes, orientation, precision...)
    <root>/<model_id>/p<PREPROCESSING_VERSION>/<sha256[:2]>/<sha256>.extras.npz   only for families with more named
        feature arrays (SAM 2.1's high-res maps, HQ-SAM's interm_embed): float16, uncompressed; listed in the .json

Entries without extras (SAM, MobileSAM, LiteMedSAM, and every entry written before extras existed) are unchanged.

The address is (sha256 of the image file's bytes, model id, preprocessing version): an embedding made by other
weights or another preprocessing is never returned.

Concurrency: every file is written to a temp file in the same folder and moved into place with ``os.replace``
(atomic on POSIX), the ``.extras.npz`` and ``.npy`` first and the ``.json`` last, so the ``.json`` marks a complete
entry. Readers treat anything missing, partial or inconsistent as a miss (and remove a corrupt entry). Several
processes (the ingest daemon writing while ``serve`` reads) can share one root without locks; concurrent eviction of the
same entry is harmless.

Eviction: least recently used first, by the ``.json`` file's mtime, which :meth:`EmbeddingStore.get` touches, until
the store is under ``max_bytes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchlabel.infer.embedding import PREPROCESSING_VERSION, ImageEmbedding
from batchlabel.infer.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

STORE_FORMAT = 1
STORED_DTYPE = np.float16
RESCAN_EVERY_PUTS = 256  # re-measure the store from disk this often (other processes write too)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9_.@+-]+$")


@dataclass(frozen=True)
class StoreEntry:
    """One stored embedding's files, size and last-use time (for eviction)."""

    json_path: Path
    npy_path: Path
    size_bytes: int
    last_used: float


class EmbeddingStore:
    """Embeddings on disk, keyed by ``(image sha256, model id, PREPROCESSING_VERSION)``.

    Args:
        root: the store folder (created on first write).
        max_bytes: size cap; the least recently used entries are evicted after a ``put`` exceeds it.
        max_pixels: an entry claiming a larger ``original_size`` is corrupt (the loader's decompression-bomb limit).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, max_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self._lock = threading.Lock()
        self._approx_bytes: int | None = None
        self._puts_since_scan = 0

    # ------------------------------------------------------------------------------------------------- addressing

    def _paths(self, image_sha256: str, model_id: str) -> tuple[Path, Path]:
        if not _SHA256.match(image_sha256):
            raise ValueError(f"image_sha256 must be 64 lowercase hex digits, got {image_sha256!r}")
        if not _MODEL_ID.match(model_id):
            raise ValueError(f"model_id must match {_MODEL_ID.pattern}, got {model_id!r}")
        folder = self.root / model_id / f"p{PREPROCESSING_VERSION}" / image_sha256[:2]
        return folder / f"{image_sha256}.json", folder / f"{image_sha256}.npy"

    # ------------------------------------------------------------------------------------------------------- reads

    def contains(self, image_sha256: str, model_id: str) -> bool:
        """True when a complete entry exists (not validated; :meth:`get` validates)."""
        json_path, npy_path = self._paths(image_sha256, model_id)
        return json_path.is_file() and npy_path.is_file()

    def model_ids(self) -> list[str]:
        """The model ids with entries of this preprocessing version (their folders; entries not validated), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(folder.name for folder in self.root.iterdir()
                      if _MODEL_ID.match(folder.name) and (folder / f"p{PREPROCESSING_VERSION}").is_dir())

    def get(self, image_sha256: str, model_id: str) -> ImageEmbedding | None:
        """The stored embedding (float16 features, read-only), or ``None``. Marks the entry as recently used.

        The one validated read of the store: an entry that cannot be decoded (garbled ``.json``/``.npy``) or whose
        metadata is inconsistent (sizes not positive, over ``max_pixels``, disagreeing with the features' shape or
        with each other; features not finite) is logged once, removed and reported as a miss, so the caller encodes
        the image again.
        """
        json_path, npy_path = self._paths(image_sha256, model_id)
        try:
            meta_bytes = json_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(meta_bytes.decode("utf-8"))
            features = np.load(npy_path, allow_pickle=False)
            embedding = self._embedding(meta, features, image_sha256, model_id, max_pixels=self.max_pixels)
            embedding = _with_extras(embedding, meta, npy_path)
        except FileNotFoundError:
            return None  # evicted or replaced by another process between the two reads
        except (ValueError, KeyError, TypeError, OSError, EOFError, IndexError, OverflowError, RecursionError) as exc:
            # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
            reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())[:200]
            log.warning("%s: corrupt embedding store entry (%s); removing it, the image is encoded again",
                        json_path, reason)
            self._remove(json_path, npy_path)
            return None
        with contextlib.suppress(OSError):  # evicted meanwhile: the value read is still valid
            os.utime(json_path)
        return embedding

    @staticmethod
    def _embedding(
        meta: object, features: np.ndarray, image_sha256: str, model_id: str, *, max_pixels: int
    ) -> ImageEmbedding:
        if not isinstance(meta, dict):
            raise ValueError(f"metadata is a {type(meta).__name__}, expected an object")
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"store format {meta.get('format')!r}, expected {STORE_FORMAT}")
        if meta["image_sha256"] != image_sha256 or meta["model_id"] != model_id:
            raise ValueError("metadata names another image or model")
        if list(features.shape) != list(meta["features_shape"]) or features.dtype != STORED_DTYPE:
            raise ValueError(f"features {features.shape} {features.dtype}, metadata says {meta['features_shape']}")
        original_size = size_pair(meta["original_size"], "original_size")
        input_size = size_pair(meta["input_size"], "input_size")
        if original_size[0] * original_size[1] > max_pixels:
            raise ValueError(f"original_size {original_size} is over the pixel limit {max_pixels:,}")
        _check_resized(original_size, input_size)
        orientation = meta["exif_orientation"]
        if not isinstance(orientation, int) or not 1 <= orientation <= 8:
            raise ValueError(f"exif_orientation {orientation!r} is not 1-8")
        if not np.isfinite(features).all():
            raise ValueError("features hold NaN or infinite values")
        return ImageEmbedding(
            features=features,
            original_size=original_size,
            input_size=input_size,
            model_id=model_id,
            precision=str(meta["precision"]),
            image_sha256=image_sha256,
            exif_orientation=orientation,
            created=float(meta["created"]),
            preprocessing_version=int(meta["preprocessing_version"]),
        )

    # ------------------------------------------------------------------------------------------------------ writes

    def put(self, embedding: ImageEmbedding) -> None:
        """Store ``embedding`` (as float16) atomically, then evict least recently used entries over ``max_bytes``."""
        if embedding.preprocessing_version != PREPROCESSING_VERSION:
            raise ValueError(
                f"embedding made with preprocessing version {embedding.preprocessing_version}, "
                f"this store holds version {PREPROCESSING_VERSION}"
            )
        json_path, npy_path = self._paths(embedding.image_sha256, embedding.model_id)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        features = np.ascontiguousarray(embedding.features, dtype=STORED_DTYPE)
        meta = {
            "format": STORE_FORMAT,
            "image_sha256": embedding.image_sha256,
            "model_id": embedding.model_id,
            "precision": embedding.precision,
            "original_size": list(embedding.original_size),
            "input_size": list(embedding.input_size),
            "exif_orientation": embedding.exif_orientation,
            "created": embedding.created,
            "preprocessing_version": embedding.preprocessing_version,
            "features_shape": list(features.shape),
            "features_dtype": "float16",
        }
        buffer = io.BytesIO()
        np.save(buffer, features, allow_pickle=False)
        npy_bytes = buffer.getvalue()
        extras_bytes = _write_extras(embedding, npy_path, meta)
        json_bytes = json.dumps(meta).encode("utf-8")
        _atomic_write(npy_path, npy_bytes)
        _atomic_write(json_path, json_bytes)  # last: a .json marks a complete entry
        added = len(npy_bytes) + len(json_bytes) + extras_bytes  # not stat(): another process may evict it at once
        with self._lock:
            self._puts_since_scan += 1
            if self._approx_bytes is None or self._puts_since_scan >= RESCAN_EVERY_PUTS:
                self._approx_bytes = None
            else:
                self._approx_bytes += added
            over = self._approx_bytes is None or self._approx_bytes > self.max_bytes
        if over:
            self.evict()

    def remove(self, image_sha256: str, model_id: str) -> None:
        """Delete one entry if present."""
        self._remove(*self._paths(image_sha256, model_id))

    @staticmethod
    def _remove(json_path: Path, npy_path: Path) -> None:
        json_path.unlink(missing_ok=True)  # the marker first: readers then see a miss, never a half entry
        npy_path.unlink(missing_ok=True)
        extras_path(npy_path).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------------- size, eviction

    def entries(self) -> Iterator[StoreEntry]:
        """Every complete entry under the root (all models and preprocessing versions)."""
        if not self.root.is_dir():
            return
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                if not filename.endswith(".json") or filename.startswith("."):
                    continue
                json_path = Path(dirpath) / filename
                npy_path = json_path.with_suffix(".npy")
                try:
                    json_stat = json_path.stat()
                    npy_size = npy_path.stat().st_size
                except FileNotFoundError:
                    continue
                with contextlib.suppress(FileNotFoundError):  # most entries have no extras
                    npy_size += extras_path(npy_path).stat().st_size
                yield StoreEntry(json_path, npy_path, json_stat.st_size + npy_size, json_stat.st_mtime)

    def size_bytes(self) -> int:
        """Bytes held by complete entries (measured on disk; other processes' writes included)."""
        return sum(entry.size_bytes for entry in self.entries())

    def evict(self) -> int:
        """Remove least recently used entries until the store is at most ``max_bytes``. Returns how many went."""
        entries = sorted(self.entries(), key=lambda entry: entry.last_used)
        total = sum(entry.size_bytes for entry in entries)
        removed = 0
        for entry in entries:
            if total <= self.max_bytes:
                break
            self._remove(entry.json_path, entry.npy_path)
            total -= entry.size_bytes
            removed += 1
        self._remove_stale_temp_files()
        with self._lock:
            self._approx_bytes = total
            self._puts_since_scan = 0
        if removed:
            log.info("embedding store %s: evicted %d least recently used entries (cap %d bytes)",
                     self.root, removed, self.max_bytes)
        return removed

    def _remove_stale_temp_files(self, *, older_than_s: float = 3600.0) -> None:
        """Temp files left by a crashed writer (``.<name>.*.tmp``) older than an hour."""
        cutoff = time.time() - older_than_s
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for filename in filenames:
                if filename.startswith(".") and filename.endswith(".tmp"):
                    path = Path(dirpath) / filename
                    try:
                        if path.stat().st_mtime < cutoff:
                            path.unlink()
                    except FileNotFoundError:
                        pass


def size_pair(value: object, key: str) -> tuple[int, int]:
    """A stored ``(height, width)``: two positive ints (not bools, not floats); ``ValueError`` naming ``key`` else.
    Also the proposal store's check of its entries' image size (``annotate/proposals.py``)."""
    if (
        not isinstance(value, list) or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{key} {value!r:.80} is not two positive integers")
    return int(value[0]), int(value[1])


def _check_resized(original_size: tuple[int, int], input_size: tuple[int, int]) -> None:
    """``input_size`` must be ``original_size`` scaled to its long side (SAM's rounding, +-1 pixel), or the square
    model frame itself (SAM 2.1 resizes every image to its full input, aspect not kept)."""
    if input_size[0] == input_size[1]:
        return
    scale = max(input_size) / max(original_size)
    expected = (original_size[0] * scale, original_size[1] * scale)
    if any(abs(e - i) > 1.0 for e, i in zip(expected, input_size, strict=True)):
        raise ValueError(f"input_size {input_size} is not original_size {original_size} resized")


def extras_path(npy_path: Path) -> Path:
    """Where an entry's extra named feature arrays live: ``<sha256>.extras.npz`` beside its ``<sha256>.npy``."""
    return npy_path.with_name(npy_path.stem + ".extras.npz")


def _write_extras(embedding: ImageEmbedding, npy_path: Path, meta: dict) -> int:
    """Write ``embedding.extras`` as float16 into :func:`extras_path` (atomically) and list their shapes in ``meta``
    under ``"extras"``. Returns the bytes written (0 and nothing written when there are none)."""
    if not embedding.extras:
        extras_path(npy_path).unlink(missing_ok=True)  # an entry rewritten without extras leaves no stale file
        return 0
    arrays = {name: np.ascontiguousarray(array, dtype=STORED_DTYPE) for name, array in embedding.extras.items()}
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    data = buffer.getvalue()
    _atomic_write(extras_path(npy_path), data)
    meta["extras"] = {name: list(array.shape) for name, array in arrays.items()}
    return len(data)


def _with_extras(embedding: ImageEmbedding, meta: dict, npy_path: Path) -> ImageEmbedding:
    """``embedding`` with the extra arrays its metadata lists, read from :func:`extras_path` and checked against
    the listed names, shapes and float16. Raises ``ValueError`` (corrupt) or ``FileNotFoundError`` (evicted)."""
    listed = meta.get("extras")
    if not listed:
        return embedding
    if not isinstance(listed, dict):
        raise ValueError(f"metadata 'extras' must map names to shapes, got {type(listed).__name__}")
    try:
        with np.load(extras_path(npy_path), allow_pickle=False) as archive:
            if sorted(archive.files) != sorted(listed):
                raise ValueError(f"extras file holds {sorted(archive.files)}, metadata lists {sorted(listed)}")
            extras = {name: archive[name] for name in listed}
    except zipfile.BadZipFile as exc:
        raise ValueError(f"extras file is not a readable .npz ({exc})") from None
    for name, array in extras.items():
        if list(array.shape) != list(listed[name]) or array.dtype != STORED_DTYPE:
            raise ValueError(f"extra {name!r} {array.shape} {array.dtype}, metadata says {listed[name]} float16")
    return dataclasses.replace(embedding, extras=extras)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file in ``path``'s folder, then ``os.replace`` it onto ``path``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
