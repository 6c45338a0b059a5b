"""batchlabel.infer.encoder with LiteMedSAM's real weights: the acceptance batch of good and bad files, the store
(nothing encoded twice), parity with SamPredictor.set_image, dynamic batches, OOM back-off, ONNX Runtime, CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from batchlabel.config import ModelConfig
from batchlabel.infer.encoder import BatchEncoder, TorchRuntime
from batchlabel.infer.models import LoadedModel, load_model
from batchlabel.infer.store import EmbeddingStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def litemedsam() -> LoadedModel:
    return load_model(ModelConfig(name="litemedsam", device="cpu"))


@pytest.fixture(scope="module")
def zoo_run(litemedsam: LoadedModel, tmp_path_factory: pytest.TempPathFactory):
    """Encode the image zoo once (batches of at most 3) and a second time through the same store."""
    from tests.infer.image_zoo import make_image_zoo

    base = tmp_path_factory.mktemp("encoder")
    zoo = make_image_zoo(base / "images")
    store = EmbeddingStore(base / "store", max_bytes=1 << 30)
    first = BatchEncoder(litemedsam, store, max_batch_images=3, max_wait_ms=5_000, runtime="torch")
    results = {r.path.name: r for r in first.encode_files(zoo.paths())}
    second = BatchEncoder(litemedsam, store, max_batch_images=3, runtime="torch")
    again = {r.path.name: r for r in second.encode_files(zoo.paths())}
    return zoo, results, again, first.stats, second.stats


def test_good_images_encode_and_each_bad_file_gets_one_line(zoo_run) -> None:
    zoo, results, _again, stats, _ = zoo_run
    assert set(results) == set(zoo.good) | set(zoo.bad)
    for name, size in zoo.good.items():
        result = results[name]
        assert result.ok and not result.cached, (name, result.error)
        assert result.embedding is not None and result.embedding.original_size == size
        assert result.embedding.features.shape == (1, 256, 64, 64)
        assert result.embedding.model_id == "litemedsam@79d8c9dc" and result.embedding.precision == "fp32"
    for name, fragment in zoo.bad.items():
        result = results[name]
        assert result.embedding is None and result.error is not None and fragment in result.error, (name, result.error)
        assert "\n" not in result.error
    assert results["rotated.jpg"].embedding.exif_orientation == 6
    assert results["rotated.jpg"].embedding.input_size == (256, 170)
    assert (stats.encoded, stats.failed, stats.cached) == (4, 5, 0)
    assert sum(stats.batch_sizes) == 4 and max(stats.batch_sizes) <= 3 and len(stats.batch_sizes) <= 3
    assert stats.encode_s > 0 and stats.load_s > 0


def test_second_run_encodes_nothing(zoo_run) -> None:
    zoo, results, again, _, stats = zoo_run
    assert (stats.encoded, stats.cached, stats.batches) == (0, 4, 0)
    for name in zoo.good:
        assert again[name].cached
        np.testing.assert_array_equal(again[name].embedding.features, results[name].embedding.features)
    assert all(again[name].error for name in zoo.bad)


@pytest.mark.parametrize("name", ["cat.jpg", "rotated.jpg"])
def test_features_match_sam_predictor(zoo_run, litemedsam: LoadedModel, name: str) -> None:
    """Our load + preprocessing + encoder == SamPredictor.set_image on the same oriented image (non-square, EXIF)."""
    from PIL import Image, ImageOps
    from segment_anything import SamPredictor

    zoo, results, *_ = zoo_run
    with Image.open(zoo.root / name) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    predictor = SamPredictor(litemedsam.sam)
    predictor.set_image(rgb)
    embedding = results[name].embedding
    assert embedding.original_size == predictor.original_size
    assert embedding.input_size == tuple(predictor.input_size)
    reference = predictor.features.numpy()
    # stored as float16: equal within float16 rounding of values of magnitude ~1
    np.testing.assert_allclose(embedding.features.astype(np.float32), reference, rtol=2e-3, atol=2e-3)


def test_encode_image_goes_through_the_store(zoo_run, litemedsam: LoadedModel, tmp_path: Path) -> None:
    from batchlabel.infer.images import load_image

    zoo, results, *_ = zoo_run
    loaded = load_image(zoo.root / "gray16.png")
    store = EmbeddingStore(tmp_path, max_bytes=1 << 30)
    encoder = BatchEncoder(litemedsam, store, runtime="torch")
    embedding = encoder.encode_image(loaded)
    np.testing.assert_array_equal(embedding.features, results["gray16.png"].embedding.features)
    assert store.get(loaded.sha256, litemedsam.model_id) is not None
    stored = store.get(loaded.sha256, litemedsam.model_id)
    assert stored is not None and stored.features.dtype == np.float16
    np.testing.assert_array_equal(encoder.encode_image(loaded).features, stored.features)  # second call: a hit


def test_bytes_read_once_are_encoded_as_read_in_one_gathered_batch(zoo_run, litemedsam: LoadedModel,
                                                                    tmp_path: Path) -> None:
    """A ``ReadImage`` is decoded from its bytes, never read again (the file is rewritten after it was read), and keeps
    the caller's sha256; ``gathered`` sources are one batch, with no second wait for company."""
    import shutil

    from batchlabel.infer.images import read_image_file

    zoo, results, *_ = zoo_run
    sources = []
    for name in ("cat.jpg", "gray16.png"):
        copy = tmp_path / name
        shutil.copy(zoo.root / name, copy)
        sources.append(read_image_file(copy))
        copy.write_bytes(b"rewritten after it was read")
    encoder = BatchEncoder(litemedsam, None, max_batch_images=4, max_wait_ms=0, runtime="torch")
    got = {result.path.name: result for result in encoder.encode_files(sources, gathered=True)}
    for source in sources:
        result = got[source.path.name]
        assert result.ok and result.embedding is not None, result.error
        assert result.sha256 == source.sha256 == result.embedding.image_sha256
        np.testing.assert_array_equal(result.embedding.features, results[source.path.name].embedding.features)
    assert encoder.stats.batch_sizes == [2]


class _OomAboveOne(TorchRuntime):
    """A fake CUDA OOM (cannot be caused on this CPU machine) for batches of more than one image; real encodes else."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__(model)
        self.batches: list[int] = []

    def _run(self, canvases: torch.Tensor, input_sizes: list[tuple[int, int]]) -> np.ndarray:
        self.batches.append(len(input_sizes))
        if len(input_sizes) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super()._run(canvases, input_sizes)


def test_out_of_memory_halves_the_batch(litemedsam: LoadedModel) -> None:
    from skimage import data

    from batchlabel.infer.preprocess import resize_to_canvas

    backend = _OomAboveOne(litemedsam)
    canvas, size = resize_to_canvas(data.astronaut()[::4, ::4], litemedsam.spec)
    features = backend.encode(np.stack([canvas, canvas]), [size, size])
    assert backend.batches == [2, 1, 1] and backend.max_batch_ok == 1
    assert features.shape == (2, 256, 64, 64)
    np.testing.assert_array_equal(features[0], features[1])  # later batches start at max_batch_ok


def test_onnx_runtime_encoder_matches_torch(zoo_run, litemedsam: LoadedModel, tmp_path: Path) -> None:
    from batchlabel.infer.onnx_export import export_onnx

    zoo, results, *_ = zoo_run
    files = export_onnx(litemedsam, tmp_path / "onnx")
    assert files.encoder.name == "litemedsam@79d8c9dc.encoder.onnx" and files.decoder.is_file()
    encoder = BatchEncoder(litemedsam, None, runtime="auto", onnx_dir=tmp_path / "onnx")
    assert encoder.runtime.name == "onnx"
    (result,) = list(encoder.encode_files([zoo.root / "cat.jpg"]))
    assert result.ok and result.embedding.precision == "fp32"
    np.testing.assert_allclose(
        result.embedding.features.astype(np.float32),
        results["cat.jpg"].embedding.features.astype(np.float32),
        rtol=2e-3, atol=2e-3,
    )
    assert BatchEncoder(litemedsam, None, runtime="torch", onnx_dir=tmp_path / "onnx").runtime.name == "torch"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: bf16 autocast and pinned-memory batches")
def test_cuda_bf16_batches_match_fp32(zoo_run, tmp_path: Path) -> None:
    zoo, results, *_ = zoo_run
    model = load_model(ModelConfig(name="litemedsam", device="cuda"))
    assert model.precision == "bf16"
    encoder = BatchEncoder(model, EmbeddingStore(tmp_path, max_bytes=1 << 30), max_batch_images=8)
    got = {r.path.name: r for r in encoder.encode_files(zoo.paths())}
    for name in zoo.good:
        a = got[name].embedding.features.astype(np.float32)
        b = results[name].embedding.features.astype(np.float32)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
        assert got[name].embedding.precision == "bf16"
