"""batchlabel.infer.engine: serve clicks with the cached-image-side ONNX decoder where it is exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlabel.config import ModelConfig
from batchlabel.infer.decoder import MaskDecoder
from batchlabel.infer.engine import select_decoder
from batchlabel.infer.models import LoadedModel, load_model
from batchlabel.infer.onnx_decoder import CachedOnnxMaskDecoder, prompt_onnx_path_for


@pytest.fixture(scope="module")
def random_sam() -> LoadedModel:
    return load_model(ModelConfig(name="sam_vit_b", checkpoint="random", allow_random_weights=True, device="cpu"))


@pytest.mark.parametrize("runtime", ["auto", "onnx"])
def test_cpu_fp32_uses_the_cached_onnx_decoder(random_sam: LoadedModel, tmp_path: Path, runtime: str) -> None:
    decoder = select_decoder(random_sam, runtime=runtime, onnx_dir=tmp_path)
    assert isinstance(decoder, CachedOnnxMaskDecoder)
    assert decoder.path == prompt_onnx_path_for(random_sam.model_id, tmp_path)


def test_torch_runtime_uses_torch(random_sam: LoadedModel, tmp_path: Path) -> None:
    assert type(select_decoder(random_sam, runtime="torch", onnx_dir=tmp_path)) is MaskDecoder


def test_failed_export_falls_back_to_torch(
    random_sam: LoadedModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "onnx"
    not_a_folder.write_text("a file where the export folder should be")
    assert type(select_decoder(random_sam, runtime="auto", onnx_dir=not_a_folder)) is MaskDecoder
    assert "ONNX prompt decoder unavailable" in caplog.text
