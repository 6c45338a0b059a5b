"""Where a Hugging Face-format family's weights come from: a hub id, a local ``save_pretrained`` folder, or ``auto``.

``model.checkpoint`` for SAM 2.1 and HQ-SAM may be:

- ``auto``: the family's official hub id (e.g. ``facebook/sam2.1-hiera-tiny``), downloaded through
  ``huggingface_hub`` (progress bars, resumable) into ``<weights_dir>/huggingface`` and reused from there offline;
- a hub id (``owner/name``) that is not an existing path: the same, for that repository;
- a local folder in Hugging Face format (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, as
  ``save_pretrained`` writes it): loaded with its own ``config.json``.

``model.download_url`` is the hub endpoint for these families (a mirror, like ``HF_ENDPOINT``). Every failure is a
:class:`WeightsUnavailableError` whose message says which folder or repository was expected and where to put it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from batchlabel.config import default_weights_dir, is_hub_id
from batchlabel.infer.weights import WeightsUnavailableError

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_DOWNLOAD_PATTERNS = ["config.json", "*.safetensors", "*.json"]


def hub_cache_dir(weights_dir: Path | None) -> Path:
    """``<weights_dir>/huggingface`` (the hub's own cache layout), ``weights_dir`` defaulting as for SAM files."""
    return (weights_dir if weights_dir is not None else default_weights_dir()) / "huggingface"


def weights_file(folder: Path) -> Path:
    """The weights file in a Hugging Face folder. Raises :class:`WeightsUnavailableError` naming what is missing."""
    if not (folder / "config.json").is_file():
        raise WeightsUnavailableError(
            f"{folder}: no config.json; expected a Hugging Face model folder (what save_pretrained writes)"
        )
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsUnavailableError(f"{folder}: no {' or '.join(WEIGHT_FILES)} next to config.json")


def resolve_hf_folder(
    model_name: str, official_hub_id: str, checkpoint: str, *, weights_dir: Path | None, endpoint: str | None
) -> Path:
    """The local Hugging Face folder holding ``model_name``'s weights for ``checkpoint`` (see the module docstring).

    Raises:
        WeightsUnavailableError: not found, not a Hugging Face folder, or the download failed (offline).
        ValueError: ``checkpoint == "random"`` (random weights are built, not loaded).
    """
    if checkpoint == "random":
        raise ValueError("checkpoint 'random' has no folder; the family builds random weights itself")
    if checkpoint == "auto":
        return _download(model_name, official_hub_id, weights_dir=weights_dir, endpoint=endpoint)
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        weights_file(path)
        return path
    if path.exists():
        raise WeightsUnavailableError(
            f"{path}: {model_name} loads a Hugging Face folder (config.json + model.safetensors, as save_pretrained "
            f"writes it) or a hub id such as {official_hub_id}; a single checkpoint file is not supported for it yet"
        )
    if is_hub_id(checkpoint):
        return _download(model_name, checkpoint, weights_dir=weights_dir, endpoint=endpoint)
    raise WeightsUnavailableError(
        f"{path}: model.checkpoint folder not found (expected a Hugging Face folder for {model_name}, "
        f"a hub id such as {official_hub_id}, or auto)"
    )


def _download(model_name: str, hub_id: str, *, weights_dir: Path | None, endpoint: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    cache = hub_cache_dir(weights_dir)
    source = endpoint or "the Hugging Face hub"
    log.info("%s: fetching %s from %s into %s (cached after the first download)", model_name, hub_id, source, cache)
    try:
        folder = Path(
            snapshot_download(hub_id, cache_dir=cache, endpoint=endpoint, allow_patterns=_DOWNLOAD_PATTERNS)
        )
    except (OSError, HfHubHTTPError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise WeightsUnavailableError(
            f"cannot download {model_name} weights {hub_id} from {source}: {reason}; on a machine with internet "
            f"access run `huggingface-cli download {hub_id} --cache-dir {cache}` and copy that folder here, or "
            "set model.checkpoint to a local folder holding the model's config.json and model.safetensors"
        ) from None
    weights_file(folder)
    return folder
