"""Issue 12, cases 2, 3 and 10 (NaN): damaged embedding-store entries are misses (removed, one warning, encoded
again), never a hang or a crash; a loader thread's exception becomes that file's failure. Real LiteMedSAM weights,
real store files damaged on disk."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchlabel.config import ModelConfig
from batchlabel.infer.encoder import BatchEncoder
from batchlabel.infer.models import LoadedModel, load_model
from batchlabel.infer.store import EmbeddingStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def litemedsam() -> LoadedModel:
    return load_model(ModelConfig(name="litemedsam", device="cpu"))


def _garble_json(json_path: Path, npy_path: Path) -> None:
    json_path.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())


def _meta_editor(**changes: object) -> Callable[[Path, Path], None]:
    def edit(json_path: Path, npy_path: Path) -> None:
        meta = json.loads(json_path.read_text())
        meta.update(changes)
        json_path.write_text(json.dumps(meta))
    return edit


def _nan_features(json_path: Path, npy_path: Path) -> None:
    features = np.load(npy_path)
    np.save(npy_path, np.full_like(features, np.nan))


@pytest.mark.parametrize(
    "damage",
    [
        _garble_json,                                    # 200 random bytes: UnicodeDecodeError before the fix
        _meta_editor(original_size=[0, 0]),              # ZeroDivisionError on every click before the fix
        _meta_editor(original_size=[100000, 100000]),    # a 10-gigapixel mask per click before the fix
        _meta_editor(original_size=[300, "451"]),
        _meta_editor(input_size=[256, 10]),              # disagrees with original_size
        _meta_editor(exif_orientation=99),
        _nan_features,                                   # all-NaN: served as an empty result before the fix
    ],
    ids=["garbled-json", "size-0x0", "size-10-gigapixels", "size-string", "input-size-inconsistent",
         "orientation", "all-nan"],
)
def test_damaged_entry_is_removed_warned_and_encoded_again(
    litemedsam: LoadedModel, tmp_path: Path, damage: Callable[[Path, Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(image)
    store = EmbeddingStore(tmp_path / "store", max_bytes=1 << 30)
    encoder = BatchEncoder(litemedsam, store, max_batch_images=2, runtime="torch")
    [first] = list(encoder.encode_files([image]))
    assert first.ok and not first.cached
    json_path = next((tmp_path / "store").rglob("*.json"))
    damage(json_path, json_path.with_suffix(".npy"))

    results: list = []
    worker = threading.Thread(target=lambda: results.extend(encoder.encode_files([image])), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "encode_files hung on a damaged store entry"
    [again] = results
    assert again.ok and not again.cached, again.error  # a miss: encoded again
    warnings = [r for r in caplog.records if "corrupt embedding store entry" in r.getMessage()]
    assert len(warnings) == 1
    got = store.get(first.sha256 or "", litemedsam.model_id)  # the new entry is sound
    assert got is not None and got.original_size == (40, 60) and np.isfinite(got.features).all()


class _BrokenStore(EmbeddingStore):
    """A store whose reads raise something no validation maps (a fault that cannot be caused with real files:
    the real read path now maps every decoding error to a miss)."""

    def get(self, image_sha256: str, model_id: str):  # type: ignore[override]
        raise RuntimeError("store backend exploded")


def test_loader_thread_exception_is_that_files_failure_not_a_hang(litemedsam: LoadedModel, tmp_path: Path) -> None:
    images = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((20, 30, 3), i * 40, np.uint8)).save(path)
        images.append(path)
    encoder = BatchEncoder(litemedsam, _BrokenStore(tmp_path / "store", max_bytes=1 << 30), load_workers=2,
                           runtime="torch")
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(encoder.encode_files(images)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "encode_files hung after a loader thread raised"
    assert sorted(r.path.name for r in results) == ["img0.png", "img1.png", "img2.png"]
    assert all(not r.ok and "store backend exploded" in (r.error or "") for r in results)


def test_store_get_of_a_damaged_entry_is_a_miss_without_a_model(tmp_path: Path) -> None:
    """The same read path, exercised directly: the entry files are gone after the miss."""
    from batchlabel.infer.embedding import ImageEmbedding

    store = EmbeddingStore(tmp_path, max_bytes=1 << 30, max_pixels=1_000_000)
    sha = "ab" * 32
    store.put(ImageEmbedding(features=np.zeros((1, 256, 8, 8), np.float32), original_size=(2000, 1000),
                             input_size=(1024, 512), model_id="m", precision="fp32", image_sha256=sha))
    assert store.get(sha, "m") is None  # 2 MP over this store's 1 MP limit: corrupt
    assert not any(os.scandir(next(tmp_path.rglob("ab"))))
