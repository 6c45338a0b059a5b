"""batchlabel.serve.embedding_lookup's memory cache is bounded by bytes, and serve's allocator policy applies."""

from __future__ import annotations

import hashlib
import platform

import numpy as np
import pytest

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.preprocess import input_size_for
from batchlabel.serve.allocator import limit_malloc_arenas
from batchlabel.serve.embedding_lookup import LRU


def _embedding(i: int, channels: int) -> ImageEmbedding:
    """A LiteMedSAM-shaped embedding with ``channels`` feature channels: ``channels * 64 * 64 * 4`` bytes."""
    return ImageEmbedding(
        features=np.full((1, channels, 64, 64), float(i), dtype=np.float32), original_size=(300, 451),
        input_size=input_size_for((300, 451), 256), model_id="litemedsam@79d8c9dc", precision="fp32",
        image_sha256=hashlib.sha256(b"image-%d" % i).hexdigest(), exif_orientation=1, created=1000.0 + i,
    )


def test_memory_cache_keeps_embeddings_within_its_bytes_least_recently_used_out() -> None:
    one_mib = _embedding(0, 64).nbytes
    assert one_mib == 2**20
    cache: LRU[str, ImageEmbedding] = LRU(3 * 2**20, lambda embedding: embedding.nbytes)
    for i in range(3):
        cache.put(f"small-{i}", _embedding(i, 64))
    assert cache.get("small-0") is not None  # now the most recently used
    cache.put("large", _embedding(9, 128))  # 2 MiB: the two least recently used leave
    assert [key for key in ("small-0", "small-1", "small-2", "large") if cache.get(key) is not None] == [
        "small-0", "large"]
    assert cache.weight == 3 * 2**20
    cache.put("huge", _embedding(10, 256))  # 4 MiB alone exceeds the bound: kept, alone
    assert len(cache) == 1 and cache.get("huge") is not None and cache.weight == 4 * 2**20


def test_unweighed_lru_counts_entries() -> None:
    cache: LRU[str, int] = LRU(2)
    for i in range(5):
        cache.put(str(i), i)
    assert (len(cache), cache.get("3"), cache.get("4"), cache.get("0")) == (2, 3, 4, None)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_arena_cap_applies_on_glibc_unless_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(8) is True  # a cap of 8 arenas: harmless for the test process
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(8) is False
