"""SAM 2.1 and HQ-SAM families: parity with transformers' own forward after the features went through the fp16
store, loading from a ``save_pretrained`` folder and a hub-format cache, offline messages, and two families'
features for one image kept apart in one store. Tiny random configs (test-only switch) at the official 1024 px input.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from batchlabel.config import ModelConfig
from batchlabel.infer.decoder import Prompt
from batchlabel.infer.families import load_family
from batchlabel.infer.families.hf import TransformersFamily
from batchlabel.infer.images import LoadedImage
from batchlabel.infer.store import EmbeddingStore, extras_path
from batchlabel.infer.weights import WeightsUnavailableError

SAM2 = "sam2.1_hiera_tiny"
SAM_HQ = "sam_hq_vit_b"
POINT = {"input_points": [[[[150.0, 110.0]]]], "input_labels": [[[1]]]}
BOX = {"input_boxes": [[[60.0, 40.0, 300.0, 220.0]]]}
PROMPTS = {
    "point": (Prompt(points=np.array([[150.0, 110.0]]), point_labels=np.array([1])), POINT),
    "box": (Prompt(box=np.array([60.0, 40.0, 300.0, 220.0])), BOX),
    "box+points": (
        Prompt(points=np.array([[150.0, 110.0], [80.0, 60.0]]), point_labels=np.array([1, 0]),
               box=np.array([60.0, 40.0, 300.0, 220.0])),
        {"input_points": [[[[150.0, 110.0], [80.0, 60.0]]]], "input_labels": [[[1, 0]]], **BOX},
    ),
}


def _config(name: str, checkpoint: str = "random", **extra: Any) -> ModelConfig:
    return ModelConfig(name=name, checkpoint=checkpoint, allow_random_weights=checkpoint == "random", device="cpu",
                       **extra)


@pytest.fixture(scope="module")
def image() -> LoadedImage:
    """skimage's astronaut, 360x270 (a real photo; non-square so both resize conventions are exercised)."""
    from PIL import Image
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((360, 270)))
    return LoadedImage(rgb=rgb, exif_orientation=1, sha256="ab" * 32, path="astronaut.png")


@pytest.fixture(scope="module")
def families(image: LoadedImage, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each family's model, and its embedding of ``image`` after a round trip through one fp16 store."""
    store = EmbeddingStore(tmp_path_factory.mktemp("store"), max_bytes=1 << 30)
    loaded = {}
    for name in (SAM2, SAM_HQ):
        family = load_family(_config(name))
        store.put(family.encode(image))
        stored = store.get(image.sha256, family.model_id)
        assert stored is not None
        loaded[name] = (family, stored)
    return {"store": store, **loaded}


def _reference(family: TransformersFamily, image: LoadedImage, prompt: dict[str, Any], multimask: bool) -> np.ndarray:
    """transformers' own pipeline: processor -> ``model(pixel_values=...)`` -> ``post_process_masks``."""
    from transformers import Sam2Processor, SamHQProcessor

    is_sam2 = family.model_type == "sam2"
    if is_sam2:
        processor = Sam2Processor(image_processor=family.processor)
        prompt = dict(prompt)
    else:  # SamHQProcessor takes one nesting level fewer for points and labels
        processor = SamHQProcessor(image_processor=family.processor)
        prompt = {key: value[0] if key != "input_boxes" else value for key, value in prompt.items()}
    inputs = processor(images=image.rgb, return_tensors="pt", **prompt)
    sizes = [inputs.pop("original_sizes")]
    if not is_sam2:
        sizes.append(inputs.pop("reshaped_input_sizes"))
    with torch.inference_mode():
        output = family.model(**{k: v.float() if v.is_floating_point() else v for k, v in inputs.items()},
                              multimask_output=multimask)
    masks = family.processor.post_process_masks(output.pred_masks, *sizes)[0][0].numpy()
    best = int(torch.argmax(output.iou_scores[0, 0]))
    return masks[best]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum()))


@pytest.mark.parametrize("name", [SAM2, SAM_HQ])
@pytest.mark.parametrize("kind", list(PROMPTS))
def test_parity_with_transformers_forward_after_fp16_store(
    families: dict[str, Any], image: LoadedImage, name: str, kind: str
) -> None:
    family, stored = families[name]
    ours_prompt, reference_prompt = PROMPTS[kind]
    decoded = family.decode(stored, ours_prompt)
    reference = _reference(family, image, reference_prompt, multimask=ours_prompt.ambiguous)
    assert decoded.masks.shape == (1, *image.original_size)
    assert decoded.low_res_logits.shape == (1, 256, 256)
    assert 0 < reference.sum() < reference.size, "reference mask is empty or full: the comparison would say nothing"
    assert _iou(decoded.masks[0], reference) >= 0.99


@pytest.mark.parametrize("name", [SAM2, SAM_HQ])
def test_multimask_and_refinement_with_previous_logits(families: dict[str, Any], name: str) -> None:
    family, stored = families[name]
    first = family.decode(stored, PROMPTS["point"][0], multimask=True)
    assert first.masks.shape[0] == 3
    assert list(first.scores) == sorted(first.scores, reverse=True)
    refined = family.decode(stored, Prompt(points=np.array([[150.0, 110.0]]), point_labels=np.array([1]),
                                           mask_logits=first.low_res_logits[:1]))
    mask_only = family.decode(stored, Prompt(mask_logits=first.low_res_logits[:1]))
    assert refined.masks.shape == mask_only.masks.shape == (1, *stored.original_size)


def test_two_families_features_for_one_image_kept_apart(families: dict[str, Any], image: LoadedImage) -> None:
    store: EmbeddingStore = families["store"]
    (sam2, sam2_stored), (hq, hq_stored) = families[SAM2], families[SAM_HQ]
    assert sam2_stored.features.dtype == np.float16
    assert {k: v.shape for k, v in sam2_stored.extras.items()} == {
        "high_res_feats_0": (1, 32, 256, 256), "high_res_feats_1": (1, 64, 128, 128)}
    assert {k: v.shape for k, v in hq_stored.extras.items()} == {"interm_embed": (1, 64, 64, 96)}
    assert sam2_stored.input_size == (1024, 1024) and hq_stored.input_size == (768, 1024)
    with pytest.raises(ValueError, match="re-encode"):
        hq.decode(sam2_stored, PROMPTS["box"][0])
    # the size cap counts the extras: the SAM 2 entry is the least recently used and goes first
    store.get(image.sha256, hq.model_id)
    hq_bytes = [entry.size_bytes for entry in store.entries() if hq.model_id in str(entry.json_path)][0]
    assert hq_bytes > hq_stored.features.nbytes  # .npy + .extras.npz + .json
    small = EmbeddingStore(store.root, max_bytes=hq_bytes)
    assert small.evict() == 1
    assert store.get(image.sha256, sam2.model_id) is None
    assert store.get(image.sha256, hq.model_id) is not None


def test_corrupt_extras_file_is_a_miss_and_removed(image: LoadedImage, families: dict[str, Any],
                                                   tmp_path: Path) -> None:
    family, stored = families[SAM_HQ]
    store = EmbeddingStore(tmp_path, max_bytes=1 << 30)
    store.put(stored)
    json_path = next(store.entries()).json_path
    extras = extras_path(json_path.with_suffix(".npy"))
    extras.write_bytes(b"not a zip")
    assert store.get(image.sha256, family.model_id) is None
    assert not json_path.exists() and not extras.exists()
    # rewritten without extras: no stale .extras.npz stays behind
    store.put(stored)
    assert extras.exists()
    store.put(dataclasses.replace(stored, extras={}))
    assert not extras.exists()
    assert store.get(image.sha256, family.model_id).extras == {}  # type: ignore[union-attr]


def test_loads_a_save_pretrained_folder(families: dict[str, Any], image: LoadedImage, tmp_path: Path) -> None:
    family, stored = families[SAM2]
    family.model.save_pretrained(tmp_path / "sam2")
    loaded = load_family(_config(SAM2, str(tmp_path / "sam2")))
    assert loaded.model_id.startswith(f"{SAM2}@") and loaded.model_id != family.model_id
    prompt = PROMPTS["box"][0]
    again = loaded.decode(dataclasses.replace(stored, model_id=loaded.model_id), prompt)
    assert np.array_equal(again.masks, family.decode(stored, prompt).masks)
    with pytest.raises(WeightsUnavailableError, match="model_type 'sam2'"):
        load_family(_config(SAM_HQ, str(tmp_path / "sam2")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsUnavailableError, match="no config.json"):
        load_family(_config(SAM2, str(tmp_path / "empty")))


def test_hub_id_offline_message_and_hub_cache(families: dict[str, Any], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A dead loopback endpoint stands for no internet: a clear message; a hub-format cache is then used."""
    offline = {"weights_dir": tmp_path, "download_url": "http://127.0.0.1:9"}
    with pytest.raises(WeightsUnavailableError) as error:
        load_family(_config(SAM_HQ, "auto", **offline))
    message = str(error.value)
    assert "syscv-community/sam-hq-vit-base" in message and "huggingface-cli download" in message
    # the hub's cache layout, as `huggingface-cli download --cache-dir <weights_dir>/huggingface` leaves it
    family, _stored = families[SAM_HQ]
    revision = "0" * 40
    repo = tmp_path / "huggingface" / "models--syscv-community--sam-hq-vit-base"
    family.model.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    with caplog.at_level(logging.INFO):
        loaded = load_family(_config("sam_hq", "auto", **offline))
    assert loaded.name == SAM_HQ and "label_anything" in caplog.text
    assert json.loads((repo / "snapshots" / revision / "config.json").read_text())["model_type"] == "sam_hq"


def test_hf_hub_offline_fails_at_once_without_touching_the_endpoint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set and nothing cached: the message at once, no probe (an endpoint that counts requests)."""
    import http.server
    import threading

    from huggingface_hub import constants

    from batchlabel.infer.families.hub import fetch_hub_snapshot

    requests: list[str] = []

    class Counting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE") as error:
            fetch_hub_snapshot("SAM 2.1 weights", "facebook/sam2.1-hiera-tiny", cache_dir=tmp_path,
                               endpoint=f"http://127.0.0.1:{server.server_address[1]}", local_hint="a folder")
        assert "huggingface-cli download facebook/sam2.1-hiera-tiny" in str(error.value) and requests == []
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        with pytest.raises(WeightsUnavailableError):  # online, the same endpoint is probed (and refuses)
            fetch_hub_snapshot("SAM 2.1 weights", "facebook/sam2.1-hiera-tiny", cache_dir=tmp_path,
                               endpoint=f"http://127.0.0.1:{server.server_address[1]}", local_hint="a folder")
    finally:
        server.shutdown()
    assert requests and all(path.startswith("/api/models/facebook/sam2.1-hiera-tiny") for path in requests), requests


class _LoopbackHub:
    """A Hugging Face hub on a loopback port, as much of it as ``snapshot_download`` uses: the revision and the file
    tree listings, HEAD and GET of ``/<repo>/resolve/<sha>/<file>``. Every request path is recorded."""

    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        import hashlib
        import http.server
        import threading

        sha = hashlib.sha1(repo.encode()).hexdigest()
        self.requests: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, body: bytes | None) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                if path in (f"/api/models/{repo}", f"/api/models/{repo}/revision/main"):
                    data = json.dumps({"id": repo, "sha": sha, "private": False,
                                       "siblings": [{"rfilename": name} for name in files]}).encode()
                    headers = {"Content-Type": "application/json"}
                elif path == f"/api/models/{repo}/tree/{sha}":
                    data = json.dumps([{"type": "file", "path": name, "size": len(content),
                                        "oid": hashlib.sha1(content).hexdigest()}
                                       for name, content in files.items()]).encode()
                    headers = {"Content-Type": "application/json"}
                elif path.startswith(f"/{repo}/resolve/") and path.rsplit("/", 1)[-1] in files:
                    data = files[path.rsplit("/", 1)[-1]]
                    headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                for key, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if body is not None:
                    self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's names
                self._reply(b"")

            def do_HEAD(self) -> None:  # noqa: N802
                self._reply(None)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_downloaded_snapshot_is_loaded_again_without_the_hub(families: dict[str, Any], tmp_path: Path) -> None:
    """Regression (42a2cf7): huggingface_hub 2.x judged a cached snapshot incomplete unless it was looked up with the
    download's allow_patterns, so every load went back to the hub and, offline, the downloaded weights were refused.
    A real download from a loopback hub whose repository also holds files the download skips."""
    family, _stored = families[SAM_HQ]
    saved = tmp_path / "saved"
    family.model.save_pretrained(saved)
    files = {path.name: path.read_bytes() for path in saved.iterdir()}
    files["pytorch_model.bin"] = b"not downloaded: *.safetensors is enough"
    files["README.md"] = b"# a model card, not downloaded"
    hub = _LoopbackHub("test-owner/sam-hq-tiny", files)
    try:
        config = _config(SAM_HQ, "test-owner/sam-hq-tiny", weights_dir=tmp_path / "weights", download_url=hub.url)
        first = load_family(config)
        downloads = [request for request in hub.requests if "/resolve/" in request and request.startswith("GET")]
        assert sorted(request.rsplit("/", 1)[-1] for request in downloads) == sorted(
            name for name in files if name.endswith((".json", ".safetensors")))
        hub.requests.clear()
        again = load_family(config)
        assert hub.requests == []  # found in the cache: not a request
    finally:
        hub.close()
    offline = load_family(config.model_copy(update={"download_url": "http://127.0.0.1:9"}))  # the hub is gone
    assert first.name == again.name == offline.name == SAM_HQ
