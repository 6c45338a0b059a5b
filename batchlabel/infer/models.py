"""Loading: a registry model with its weights, on a device, ready to encode (:func:`load_model`).

The model's description is :mod:`batchlabel.infer.model_registry`; its weights file is found by
:mod:`batchlabel.infer.weights`. ``model.checkpoint: random`` builds deterministic random weights behind the
test-only ``allow_random_weights`` switch. Nothing here runs at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchlabel.config import ConfigError, ModelConfig
from batchlabel.infer.model_registry import MODEL_SPECS, ModelSpec
from batchlabel.infer.weights import WeightsUnavailableError, checkpoint_sha256, resolve_checkpoint

if TYPE_CHECKING:
    import torch
    from segment_anything.modeling import Sam

log = logging.getLogger(__name__)

RANDOM_WEIGHTS_SEED = 0


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



#: State-dict keys a checkpoint may lack without failing a strict load (MobileSAM's unused classifier head).
OPTIONAL_KEY_PREFIXES = ("image_encoder.head.", "image_encoder.norm_head.")


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


def _reason(error: BaseException) -> str:
    """One line for a torch.load failure: the unpickler's own reason, not torch's advice to unpickle unsafely."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.endswith("WeightsUnpickler error:") and index + 1 < len(lines):
            return f"{type(error).__name__}: {lines[index + 1]}"
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _state_dict(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The state dict in the checkpoint file ``path`` (``weights_only``: nothing in it is executed).

    ``mmap``: map the tensors instead of reading them (what ``check`` uses: a multi-GB file costs little).
    Raises :class:`WeightsUnavailableError` naming the file for anything that is not a PyTorch checkpoint holding a
    state dict: torch's unpickler raises many kinds of error on foreign bytes (IndexError, KeyError,
    UnpicklingError, RuntimeError for a bad zip, ...), so every ``Exception`` is that user error here.
    """
    import zipfile

    import torch

    mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format; a legacy file is read
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # any unpickler error on foreign bytes: the file is not a checkpoint
        raise WeightsUnavailableError(
            f"{path}: model.checkpoint is not a readable PyTorch checkpoint ({_reason(exc)})"
        ) from None
    if isinstance(loaded, dict):
        for key in ("model", "state_dict"):
            if key in loaded and isinstance(loaded[key], dict):
                loaded = loaded[key]
                break
        if loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
            return dict(loaded)
        raise WeightsUnavailableError(f"{path}: model.checkpoint holds no state dict of tensors")
    raise WeightsUnavailableError(f"{path}: model.checkpoint: expected a state dict, got {type(loaded).__name__}")


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


def verify_checkpoint_file(spec: ModelSpec, path: Path) -> None:
    """Open ``path`` as ``load_model`` would, without loading it: a PyTorch checkpoint whose state dict fits
    ``spec``'s model (keys and shapes). Tensors are memory-mapped and the model is built on torch's ``meta`` device
    where it can be (TinyViT cannot: MobileSAM / LiteMedSAM, ~10 M parameters, are built on the CPU), so ``check``
    pays seconds, not the checkpoint's size in memory.

    Raises:
        WeightsUnavailableError: naming the file and what is wrong with it.
    """
    import torch

    state = _state_dict(path, mmap=True)
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except RuntimeError:  # TinyViT calls .item() while building
        skeleton = spec.build()
    load_state_dict_strict(skeleton, state, source=str(path))


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
