"""Embedding lookup for the backend: memory LRU -> embedding store -> encode once on a miss.

An image is identified by the sha256 of its bytes (the store's content address). For local files the hash is cached
per ``(path, size, mtime_ns, inode)``; for Label Studio uploads (immutable) per URL, so a hit never re-reads or
re-downloads the image. On a miss the image is decoded (EXIF orientation applied by ``load_image``), encoded once
and put in the store; concurrent requests for the same image wait on a per-image lock for that one encode, and
encodes of different images run one at a time (no gain from parallel encodes on a CPU; bounded memory on a GPU).

Nothing here is mutable state a request can observe half-updated: embeddings are immutable values, caches map keys to
immutable values under a lock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.images import ImageLoadError, LoadedImage, load_image, load_image_bytes
from batchlabel.serve.sources import ImageSource, ImageSourceError, LocalImage, RemoteImage

log = logging.getLogger(__name__)

MEMORY_EMBEDDING_BYTES = 128 * 2**20  # embeddings kept in memory, by their arrays' bytes (LiteMedSAM: 4 MiB each)
HASH_CACHE_ENTRIES = 65536

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe LRU map holding at most ``capacity`` units, each value weighing ``weigh(value)`` units
    (default 1: ``capacity`` counts entries). The newest value is always kept, even when it alone exceeds it."""

    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda _value: 1) -> None:
        self.capacity = capacity
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._items[key] = (value, weight)
            self._total += weight
            while self._total > self.capacity and len(self._items) > 1:
                _key, (_value, dropped) = self._items.popitem(last=False)
                self._total -= dropped

    @property
    def weight(self) -> int:
        """The units held (entries, or bytes for a byte-weighed cache)."""
        return self._total

    def __len__(self) -> int:
        return len(self._items)


class KeyedLocks:
    """One lock per key, created on demand and dropped when no thread holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


Origin = Literal["memory", "store", "encoded"]


@dataclass(frozen=True)
class EmbeddingLookup:
    """An image's embedding and where it came from (``memory``, ``store`` or ``encoded`` on a miss)."""

    embedding: ImageEmbedding
    origin: Origin
    lookup_ms: float


class StoreLike(Protocol):
    """What the provider needs of :class:`batchlabel.infer.store.EmbeddingStore`."""

    def get(self, image_sha256: str, model_id: str) -> ImageEmbedding | None: ...

    def put(self, embedding: ImageEmbedding) -> object: ...


class EmbeddingProvider:
    """Finds or makes the embedding of a task's image.

    Args:
        model_id: the loaded model's id (store key).
        store: the embedding store shared with ``batchlabel run``.
        encode: ``LoadedImage -> ImageEmbedding`` (``BatchEncoder.encode_image``).
        fetch: ``RemoteImage -> bytes`` for uploads and (when enabled) remote URLs.
        memory_bytes: the most bytes of embedding arrays kept in memory (:attr:`ImageEmbedding.nbytes`).
    """

    def __init__(
        self,
        *,
        model_id: str,
        store: StoreLike,
        encode: Callable[[LoadedImage], ImageEmbedding],
        fetch: Callable[[RemoteImage], bytes],
        memory_bytes: int = MEMORY_EMBEDDING_BYTES,
    ) -> None:
        self.model_id = model_id
        self._store = store
        self._encode = encode
        self._fetch = fetch
        self._memory: LRU[str, ImageEmbedding] = LRU(memory_bytes, lambda embedding: embedding.nbytes)
        self._hashes: LRU[Hashable, str] = LRU(HASH_CACHE_ENTRIES)
        self._image_locks = KeyedLocks()
        self._encode_lock = threading.Lock()
        self.encodes = 0  # how many misses were encoded (for tests and benchmarks)

    def _cached(self, sha256: str) -> tuple[ImageEmbedding, Origin] | None:
        embedding = self._memory.get(sha256)
        if embedding is not None:
            return embedding, "memory"
        embedding = self._store.get(sha256, self.model_id)
        if embedding is not None:
            self._memory.put(sha256, embedding)
            return embedding, "store"
        return None

    def _identify(self, source: ImageSource) -> tuple[str, bytes | None]:
        """The image's sha256, and its bytes when they had to be downloaded to learn it."""
        if isinstance(source, LocalImage):
            try:
                stat = source.path.stat()
            except OSError as exc:
                raise ImageSourceError(404, f"image {source.relative!r} cannot be read: {exc.strerror}") from None
            key = ("file", str(source.path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            sha256 = self._hashes.get(key)
            if sha256 is not None:
                return sha256, None
            try:  # read once: on a store miss these bytes are decoded without reading or hashing the file again
                data = source.path.read_bytes()
            except OSError as exc:
                raise ImageSourceError(404, f"image {source.relative!r} cannot be read: {exc.strerror}") from None
            sha256 = hashlib.sha256(data).hexdigest()
            self._hashes.put(key, sha256)
            return sha256, data
        if source.label_studio:  # uploads never change under the same URL
            sha256 = self._hashes.get(("url", source.url))
            if sha256 is not None:
                return sha256, None
        data = self._fetch(source)
        sha256 = hashlib.sha256(data).hexdigest()
        if source.label_studio:
            self._hashes.put(("url", source.url), sha256)
        return sha256, data

    def _load(self, source: ImageSource, data: bytes | None, sha256: str) -> LoadedImage:
        """Decode the image; ``data`` (read by :meth:`_identify`, whose hash is ``sha256``) when there is some."""
        try:
            if isinstance(source, LocalImage):
                if data is None:
                    return load_image(source.path)
                return load_image_bytes(data, name=source.path, sha256=sha256)
            if data is None:
                return load_image_bytes(self._fetch(source), name=source.url.split("?", 1)[0])
            return load_image_bytes(data, name=source.url.split("?", 1)[0], sha256=sha256)
        except ImageLoadError as exc:
            raise ImageSourceError(422, f"cannot decode the task's image: {exc}") from None
        except OSError as exc:
            raise ImageSourceError(404, f"cannot read the task's image: {exc.strerror or exc}") from None

    def get(self, source: ImageSource) -> EmbeddingLookup:
        """The embedding of ``source``'s image. Raises :class:`ImageSourceError` for unreadable images."""
        start = time.perf_counter()
        sha256, data = self._identify(source)
        found = self._cached(sha256)
        if found is None:
            with self._image_locks.hold(sha256):
                found = self._cached(sha256)  # another request may have encoded it while we waited
                if found is None:
                    encoded: tuple[ImageEmbedding, Origin] = (self._encode_miss(source, sha256, data), "encoded")
                    found = encoded
        embedding, origin = found
        return EmbeddingLookup(embedding, origin, (time.perf_counter() - start) * 1000.0)

    def _encode_miss(self, source: ImageSource, sha256: str, data: bytes | None) -> ImageEmbedding:
        loaded = self._load(source, data, sha256)
        if loaded.sha256 != sha256:  # the file changed between hashing and reading: key by what was encoded
            log.info("image changed while loading path=%s", getattr(source, "relative", None))
        start = time.perf_counter()
        with self._encode_lock:
            embedding = self._encode(loaded)
        encode_ms = (time.perf_counter() - start) * 1000.0
        self._store.put(embedding)
        self._memory.put(embedding.image_sha256, embedding)
        self.encodes += 1
        log.info(
            "store miss encoded sha256=%s size=%dx%d encode_ms=%.0f memory_cache=%d embeddings %.0f MB",
            embedding.image_sha256[:12], embedding.original_size[1], embedding.original_size[0], encode_ms,
            len(self._memory), self._memory.weight / 2**20,
        )
        return embedding
