"""batchlabel.infer.store: content addressing, float16 round trip, corrupt entries, LRU eviction, many processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.preprocess import input_size_for
from batchlabel.infer.store import EmbeddingStore

SHAPE = (1, 256, 8, 8)  # small features keep the tests fast; the store does not care about the spatial size


def _sha(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def _embedding(i: int, model_id: str = "litemedsam@79d8c9dc", shape: tuple[int, ...] = SHAPE) -> ImageEmbedding:
    features = np.random.default_rng(i).standard_normal(shape).astype(np.float32)
    return ImageEmbedding(
        features=features, original_size=(300 + i, 451), input_size=input_size_for((300 + i, 451), 256),
        model_id=model_id,
        precision="fp32", image_sha256=_sha(i), exif_orientation=6, created=1000.0 + i,
    )


def test_round_trip_is_float16_and_keyed_by_model(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path, max_bytes=1 << 30)
    original = _embedding(1, shape=(1, 256, 64, 64))
    assert store.get(original.image_sha256, original.model_id) is None
    store.put(original)
    assert store.contains(original.image_sha256, original.model_id)
    got = store.get(original.image_sha256, original.model_id)
    assert got is not None
    assert got.features.dtype == np.float16 and not got.features.flags.writeable
    np.testing.assert_allclose(got.features, original.features, rtol=1e-3, atol=1e-3)
    assert (got.original_size, got.input_size, got.exif_orientation, got.precision, got.created) == (
        (301, 451), (171, 256), 6, "fp32", 1001.0)
    assert store.get(original.image_sha256, "sam_vit_b@ec2df627") is None
    npy = next(tmp_path.rglob("*.npy"))
    assert 2 * 1024 * 1024 <= npy.stat().st_size < 2 * 1024 * 1024 + 4096  # float16 on disk: ~2 MiB
    assert store.size_bytes() > npy.stat().st_size


@pytest.mark.parametrize("damage", ["truncate_npy", "delete_npy", "garbage_json", "wrong_shape"])
def test_corrupt_or_partial_entry_is_a_miss_and_removed(tmp_path: Path, damage: str) -> None:
    store = EmbeddingStore(tmp_path, max_bytes=1 << 30)
    emb = _embedding(2)
    store.put(emb)
    npy = next(tmp_path.rglob("*.npy"))
    meta = npy.with_suffix(".json")
    if damage == "truncate_npy":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "delete_npy":
        npy.unlink()
    elif damage == "garbage_json":
        meta.write_text("{not json")
    else:
        np.save(npy, np.zeros((1, 256, 4, 4), dtype=np.float16))
    assert store.get(emb.image_sha256, emb.model_id) is None
    if damage != "delete_npy":
        assert not meta.exists() and not npy.exists()
    store.put(emb)
    assert store.get(emb.image_sha256, emb.model_id) is not None


def test_lru_eviction_removes_least_recently_used_first(tmp_path: Path) -> None:
    probe = EmbeddingStore(tmp_path / "probe", max_bytes=1 << 30)
    probe.put(_embedding(0))
    entry_bytes = probe.size_bytes()
    store = EmbeddingStore(tmp_path / "s", max_bytes=int(3.5 * entry_bytes))
    for i in range(3):
        store.put(_embedding(i))
        json_path = next((tmp_path / "s").rglob(f"{_sha(i)}.json"))
        os.utime(json_path, (1000 + i, 1000 + i))  # put order, without sleeping
    assert store.get(_sha(0), "litemedsam@79d8c9dc") is not None  # entry 0 becomes the most recently used
    store.put(_embedding(3))
    store.put(_embedding(4))  # over the cap: the oldest unused entries (1, then 2) go
    assert store.size_bytes() <= store.max_bytes
    present = {i for i in range(5) if store.contains(_sha(i), "litemedsam@79d8c9dc")}
    assert present == {0, 3, 4}


def _worker(root: str, seed: int, errors: multiprocessing.Queue) -> None:
    store = EmbeddingStore(root, max_bytes=int(os.environ.get("STORE_CAP", "0")) or 6 * 140_000)
    rng = np.random.default_rng(seed)
    try:
        for _ in range(40):
            i = int(rng.integers(0, 8))
            if rng.random() < 0.5:
                store.put(_embedding(i))
            else:
                got = store.get(_sha(i), "litemedsam@79d8c9dc")
                if got is not None:
                    expected = _embedding(i).features.astype(np.float16)
                    if not np.array_equal(got.features, expected) or got.original_size != (300 + i, 451):
                        errors.put(f"wrong value for {i}")
    except Exception as exc:  # noqa: BLE001 - report any failure of a child process to the test
        errors.put(f"{exc.__class__.__name__}: {exc}")


def test_many_processes_read_write_and_evict_at_once(tmp_path: Path) -> None:
    probe = EmbeddingStore(tmp_path / "probe", max_bytes=1 << 30)
    probe.put(_embedding(0))
    os.environ["STORE_CAP"] = str(4 * probe.size_bytes())  # 8 keys, room for 4: constant eviction
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    workers = [context.Process(target=_worker, args=(str(tmp_path / "s"), seed, errors)) for seed in range(4)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        del os.environ["STORE_CAP"]
    assert all(worker.exitcode == 0 for worker in workers)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert not list((tmp_path / "s").rglob("*.tmp"))
    store = EmbeddingStore(tmp_path / "s", max_bytes=1 << 30)
    for entry in store.entries():
        sha = entry.json_path.stem
        assert store.get(sha, "litemedsam@79d8c9dc") is not None  # every surviving entry is complete and valid
