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
    folder = fetch_hub_snapshot(f"{model_name} weights", hub_id, cache_dir=hub_cache_dir(weights_dir),
                                endpoint=endpoint, allow_patterns=_DOWNLOAD_PATTERNS,
                                local_hint="set model.checkpoint to a local folder holding the model's config.json "
                                           "and model.safetensors")
    weights_file(folder)
    return folder


#: Seconds the hub endpoint gets to answer one probe request before a download (connect + read): a closed port or a
#: black-holed address is a clear offline error within this, instead of the hub client's retries (minutes).
HUB_PROBE_TIMEOUT_S = 10.0


def hub_endpoint(endpoint: str | None) -> str:
    """The endpoint downloads use: ``endpoint``, else ``huggingface_hub``'s (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def cached_hub_snapshot(hub_id: str, *, cache_dir: Path | None, allow_patterns: list[str] | None = None) -> Path | None:
    """The folder of ``hub_id``'s snapshot already in ``cache_dir`` (``None``: the hub's default cache), else None.
    Touches no network. ``allow_patterns``: the files the download took (huggingface_hub checks a cached snapshot
    against the repository's listing: without the same patterns the files a download skipped count as missing)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, cache_dir=cache_dir, local_files_only=True,
                                      allow_patterns=allow_patterns))
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError
        return None


def probe_hub(hub_id: str, *, endpoint: str | None, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """One GET of ``<endpoint>/api/models/<hub_id>`` within ``timeout_s``: None when the endpoint answers (any HTTP
    status: a gated repository answers 401 and the download handles that), else the reason it could not be reached."""
    import httpx

    url = f"{hub_endpoint(endpoint)}/api/models/{hub_id}"
    try:
        with httpx.Client(timeout=timeout_s) as client:
            client.get(url)
    except httpx.HTTPError as exc:
        return f"{url} unreachable ({exc.__class__.__name__}: {exc})".replace(" ()", "")
    return None


def hub_offline() -> bool:
    """Whether the user switched the hub off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``, as huggingface_hub
    reads them): then nothing is probed or downloaded."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def offline_hint(hub_id: str, *, cache_dir: Path | None, local_hint: str) -> str:
    """What to do without the hub: the download command for a connected machine, or a local folder."""
    cache_option = f" --cache-dir {cache_dir}" if cache_dir is not None else ""
    return (f"on a machine with internet access run `huggingface-cli download {hub_id}{cache_option}` and copy that "
            f"folder here, or {local_hint}")


def fetch_hub_snapshot(what: str, hub_id: str, *, cache_dir: Path | None, endpoint: str | None,
                       allow_patterns: list[str] | None = None, local_hint: str) -> Path:
    """The local folder of hub repository ``hub_id``: the snapshot in ``cache_dir`` (``None``: the hub's default
    cache) when it is there, read with no network; else downloaded once.

    With ``HF_HUB_OFFLINE`` set (:func:`hub_offline`) a snapshot that is not cached fails at once, touching no
    network. Before a download the endpoint is probed (:func:`probe_hub`, :data:`HUB_PROBE_TIMEOUT_S`): offline, this
    fails in seconds with the offline hint instead of the hub client's retries (transformers' ``from_pretrained`` on a
    hub id retried each request for ~23 s, 150 s in all; a black-holed endpoint held ``snapshot_download`` 140 s).
    So callers load the returned folder, never the hub id.

    Args:
        what: names the thing for the message (``"SAM 2.1 weights"``, ``"preannotate.detector.model"``).
        local_hint: the setting that takes a local folder instead, for the message.

    Raises:
        WeightsUnavailableError: the hub cannot be reached (or refused) and nothing is cached; the message holds
            :func:`offline_hint`.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    cached = cached_hub_snapshot(hub_id, cache_dir=cache_dir, allow_patterns=allow_patterns)
    if cached is not None:
        return cached
    source = endpoint or "the Hugging Face hub"
    hint = offline_hint(hub_id, cache_dir=cache_dir, local_hint=local_hint)
    if hub_offline():
        where = cache_dir if cache_dir is not None else "the hub's cache"
        raise WeightsUnavailableError(f"cannot download {what} {hub_id}: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is "
                                      f"set and it is not in {where}; {hint}")
    unreachable = probe_hub(hub_id, endpoint=endpoint)
    if unreachable is not None:
        raise WeightsUnavailableError(f"cannot download {what} {hub_id} from {source}: {unreachable}; {hint}")
    where = f" into {cache_dir}" if cache_dir is not None else ""
    log.info("%s: fetching %s from %s%s (cached after the first download)", what, hub_id, source, where)
    try:
        return Path(snapshot_download(hub_id, cache_dir=cache_dir, endpoint=endpoint, allow_patterns=allow_patterns))
    except Exception as exc:  # the hub client's transport errors (httpx2), HfHubHTTPError, OSError: all "offline"
        if not isinstance(exc, (OSError, HfHubHTTPError)) and "httpx" not in type(exc).__module__:
            raise
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise WeightsUnavailableError(f"cannot download {what} {hub_id} from {source}: {reason}; {hint}") from None
