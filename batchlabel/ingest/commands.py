"""``batchlabel run``, ``watch`` and ``status``: ingestion of the document root into Label Studio.

- ``run CONFIG [--json] [--no-progress]``: one pass over the document root (waiting for files still being written),
  then exit: 0 when everything pending was pushed, 1 when some files failed or could not be pushed (each listed),
  2 on a config error (including a Label Studio key it refuses).
- ``watch CONFIG [--summary-every-s S]``: the daemon: initial scan, then a watchdog observer; runs until SIGINT or
  SIGTERM, finishes the batch in flight (queued files stay journaled for the next start) and exits 0. One log line
  per pushed batch and a summary every ``S`` seconds.
- ``status CONFIG [--json]``: counts per stage, failures with reasons, embedding-store size, Label Studio
  reachability.

Embedded Label Studio (``label_studio.url: null``): ``batchlabel up`` passes the running server's URL and key on the
namespace (``args.label_studio_url``, ``args.label_studio_api_key``); when they are absent, ``run``/``watch`` start
the embedded server themselves (:func:`open_label_studio`) and stop it on exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchlabel.config import Config

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.pipeline import Pipeline

log = logging.getLogger(__name__)

GIB = 1024**3
EXIT_OK, EXIT_FAILURES, EXIT_CONFIG = 0, 1, 2
#: ``run`` gives up pushing after Label Studio has been unreachable this long (files stay journaled).
RUN_UNAVAILABLE_LIMIT_S = 600.0
POLL_S = 0.05


class _ConfigProblemError(Exception):
    """Printed as a config error (exit 2)."""


@contextmanager
def open_label_studio(config: Config, args: argparse.Namespace | None = None) -> Iterator[LabelStudio]:
    """A connected SDK client for the configured Label Studio.

    Hook for the embedded server: when ``label_studio.url`` is null, the URL and key come from
    ``args.label_studio_url`` / ``args.label_studio_api_key`` (set by ``batchlabel up``), else the embedded server is
    started here (``EmbeddedLabelStudio.from_config``) and stopped when the block exits.
    """
    from batchlabel.sync.client import LabelStudioError, connect

    url = getattr(args, "label_studio_url", None)
    key = getattr(args, "label_studio_api_key", None)
    server = None
    if config.embedded_label_studio and url is None:
        from batchlabel.sync.server import EmbeddedLabelStudio

        server = EmbeddedLabelStudio.from_config(config)
        server.start()
        url, key = server.url, server.credentials.api_key
    try:
        try:
            ls = connect(config.label_studio, url=url, api_key=key)
        except LabelStudioError as error:
            raise _ConfigProblemError(f"label_studio: {error}") from None
        yield ls
    finally:
        if server is not None:
            server.stop()


@dataclass
class _Engine:
    encoder: Any
    decoder: Any
    model_id: str


def _load_engine(config: Config, model: Any = None) -> _Engine:
    """Encoder and decoder for the configured model; ``model`` reuses an already loaded one (``batchlabel up`` shares
    the backend's model with the watcher)."""
    from batchlabel.infer.decoder import MaskDecoder
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.models import WeightsUnavailableError, load_model
    from batchlabel.infer.store import EmbeddingStore

    if model is None:
        try:
            model = load_model(config.model)
        except WeightsUnavailableError as error:
            raise _ConfigProblemError(f"model: weights unavailable: {error}") from None
    store = EmbeddingStore(config.embeddings_dir, max_bytes=int(config.cache.max_gb * GIB))
    encoder = BatchEncoder(model, store, max_batch_images=config.model.batch_size,
                           max_wait_ms=config.model.max_wait_ms, backend=config.model.backend,
                           onnx_dir=config.cache.dir / "onnx")
    decoder = MaskDecoder.from_model(model) if config.preannotate.mode != "none" else None
    return _Engine(encoder, decoder, model.model_id)


@dataclass
class _Session:
    journal: Journal
    pipeline: Pipeline
    tracker: Any


def _start(config: Config, ls: LabelStudio, *, stop: threading.Event, unavailable_limit_s: float | None,
           model: Any = None,
           on_progress: Callable[[str], None] | None = None) -> _Session:
    from batchlabel.ingest.discovery import PathFilter, StabilityTracker
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.pipeline import Pipeline
    from batchlabel.ingest.preannotate import model_version_for
    from batchlabel.ingest.sink import LabelStudioSink

    root = config.storage.root
    if not root.is_dir():
        raise _ConfigProblemError(f"storage.root: {root} is not a folder")
    engine = _load_engine(config, model)
    model_version = model_version_for(config, engine.model_id)
    journal = Journal(config.journal_path)
    sink = LabelStudioSink(ls, config, model_version)
    sink.open()
    uncertain = any(record.push_started for record in journal.pending())
    if journal.is_empty() or uncertain or config.preannotate.mode in ("boxes", "points"):
        sink.load_index()  # reconcile with what Label Studio already has (lost journal, interrupted push)
    tracker = StabilityTracker(root, PathFilter(config.storage.include, config.storage.exclude),
                               stable_s=config.storage.stable_s)
    pipeline = Pipeline(config, journal, sink, engine.encoder, engine.decoder, model_version=model_version,
                        stop=stop, unavailable_limit_s=unavailable_limit_s, on_progress=on_progress)
    return _Session(journal, pipeline, tracker)


def _initial_scan(session: _Session, config: Config) -> int:
    from batchlabel.ingest.discovery import scan

    count = 0
    for path in scan(config.storage.root, session.tracker.path_filter):
        session.tracker.observe(path)
        count += 1
    for record in session.journal.pending():  # journaled work whose file vanished meanwhile
        if not (config.storage.root / record.rel_path).exists():
            session.journal.forget(record.rel_path)
    return count


def _feed(session: _Session) -> int:
    stable = session.tracker.poll()
    for item in stable:
        session.pipeline.submit(item)
    return len(stable)


def _report_lines(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"discovered {summary['discovered']}, pushed {summary['pushed']} "
        f"(+{summary['already_in_label_studio']} already in Label Studio), duplicates {summary['duplicates']}, "
        f"unchanged {summary['unchanged']}, encoded {summary['encoded']} ({summary['cached']} from the store), "
        f"predicted {summary['predicted']}, {summary['push_batches']} push batch(es) in {summary['seconds']} s",
    ]
    if "ray" in summary:
        ray = summary["ray"]
        lines.append(f"Ray cluster: encoded {ray['encoded']}, already stored {ray['cached']}, failed {ray['failed']} "
                     f"of {ray['images']} on {ray['actors']} actor(s) in {ray['wall_s']} s")
    for failure in summary["failures"]:
        lines.append(f"FAILED {failure['path']}: {failure['stage']}: {failure['reason']}")
    for rel in summary["not_pushed"]:
        lines.append(f"NOT PUSHED {rel}: Label Studio unavailable; pushed by the next run")
    return lines


def _summary(session: _Session, started: float, scanned: int) -> dict[str, Any]:
    counters = session.pipeline.counters.as_dict()
    failures = [
        {"path": r.rel_path, "stage": r.failed_stage or "?", "reason": r.last_error or ""}
        for r in session.journal.failures()
    ]
    return {
        **{k: v for k, v in counters.items() if k != "failed"},
        "scanned": scanned,
        "failures": failures,
        "not_pushed": sorted(set(session.pipeline.not_pushed)),
        "stages": session.journal.counts(),
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_command(config: Config, args: argparse.Namespace) -> int:
    """One ingestion pass; see the module docstring for exit codes."""
    as_json = bool(getattr(args, "json", False))
    started = time.perf_counter()
    stop = threading.Event()
    cluster = None
    if getattr(args, "ray", None) is not None:  # the encode stage on a Ray cluster first; the rest as below
        from batchlabel.ingest.ray_encode import RayUnavailableError, prefetch_for_run

        try:
            cluster = prefetch_for_run(config, args).as_dict()
        except RayUnavailableError as error:
            print(f"batchlabel run: {error}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        with open_label_studio(config, args) as ls:
            progress = None
            if sys.stderr.isatty() and not getattr(args, "no_progress", False) and not as_json:
                from tqdm import tqdm

                progress = tqdm(unit="img", desc="ingest", file=sys.stderr)
            session = _start(config, ls, stop=stop, unavailable_limit_s=RUN_UNAVAILABLE_LIMIT_S,
                             on_progress=(lambda _rel: progress.update(1)) if progress is not None else None)
            try:
                scanned = _initial_scan(session, config)
                if progress is not None:
                    progress.total = scanned
                while session.tracker.pending():
                    if not _feed(session):
                        time.sleep(min(POLL_S * 4, session.tracker.next_due_s() or POLL_S))
                session.pipeline.close()
            except KeyboardInterrupt:
                stop.set()
                session.pipeline.close()
                raise
            finally:
                if progress is not None:
                    progress.close()
            summary = _summary(session, started, scanned)
            if cluster is not None:
                summary["ray"] = cluster
            session.journal.close()
    except _ConfigProblemError as problem:
        print(f"batchlabel run: config error\n{problem}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as error:
        from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

        if isinstance(error, (LabelStudioError, LabelStudioUnavailableError)):
            print(f"batchlabel run: {error}", file=sys.stderr)
            return EXIT_FAILURES
        raise
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for line in _report_lines(summary):
            print(line)
    return EXIT_FAILURES if summary["failures"] or summary["not_pushed"] else EXIT_OK


def watch_command(config: Config, args: argparse.Namespace) -> int:
    """The ingestion daemon; exits 0 after SIGINT/SIGTERM (2 on a config error)."""
    from batchlabel.ingest.autobuild import AutoBuilder
    from batchlabel.ingest.discovery import FolderWatcher

    summary_every_s = float(getattr(args, "summary_every_s", 60.0) or 60.0)
    stop = threading.Event()
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    started = time.perf_counter()
    try:
        with open_label_studio(config, args) as ls:
            session = _start(config, ls, stop=stop, unavailable_limit_s=None,
                             model=getattr(args, "loaded_model", None))
            watcher = FolderWatcher(session.tracker)
            watcher.start()  # before the scan: nothing created during the scan is missed
            scanned = _initial_scan(session, config)
            log.info("watching %s (%d file(s) found at start)", config.storage.root, scanned)
            next_summary = time.monotonic() + summary_every_s
            auto_builder = AutoBuilder(config, ls)
            while not stop.is_set():
                _feed(session)
                auto_builder.poll()
                due = session.tracker.next_due_s()
                session.tracker.wait_for_change(min(1.0, due if due is not None else 1.0) or POLL_S)
                if time.monotonic() >= next_summary:
                    counts = session.journal.counts()
                    log.info("summary: %s; %d waiting to be stable", ", ".join(f"{k} {v}" for k, v in counts.items()),
                             session.tracker.pending())
                    next_summary = time.monotonic() + summary_every_s
            log.info("stopping: finishing the batch in flight")
            watcher.stop()
            session.pipeline.close()
            auto_builder.join(timeout_s=600.0)
            summary = _summary(session, started, scanned)
            session.journal.close()
            log.info("stopped: %s", _report_lines(summary)[0])
    except _ConfigProblemError as problem:
        print(f"batchlabel watch: config error\n{problem}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def status_command(config: Config, args: argparse.Namespace) -> int:
    """Counts per stage, failures, store size, Label Studio reachability; exit 0 (1 when there are failures)."""
    from batchlabel.ingest.journal import STAGES, Journal

    as_json = bool(getattr(args, "json", False))
    report: dict[str, Any] = {"journal": str(config.journal_path)}
    if config.journal_path.exists():
        with Journal(config.journal_path) as journal:
            report["stages"] = journal.counts()
            report["failures"] = [
                {"path": r.rel_path, "stage": r.failed_stage, "reason": r.last_error, "attempts": r.attempts}
                for r in journal.failures()
            ]
            report["waiting_for_label_studio"] = [
                {"path": r.rel_path, "reason": r.last_error} for r in journal.records(("predicted",)) if r.last_error
            ]
    else:
        report["stages"] = dict.fromkeys(STAGES, 0)
        report["failures"] = []
        report["waiting_for_label_studio"] = []
    report["embedding_store_bytes"] = _store_size(config)
    report["label_studio"] = _reachability(config)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print("stages: " + ", ".join(f"{k} {v}" for k, v in report["stages"].items()))
        for failure in report["failures"]:
            print(f"FAILED {failure['path']}: {failure['stage']}: {failure['reason']}")
        print(f"embedding store: {report['embedding_store_bytes'] / 1e6:.1f} MB in {config.embeddings_dir}")
        reach = report["label_studio"]
        print(f"Label Studio: {reach['state']}" + (f" ({reach['detail']})" if reach.get("detail") else ""))
    return EXIT_FAILURES if report["failures"] else EXIT_OK


def _store_size(config: Config) -> int:
    if not config.embeddings_dir.exists():
        return 0
    from batchlabel.infer.store import EmbeddingStore

    return int(EmbeddingStore(config.embeddings_dir, max_bytes=int(config.cache.max_gb * GIB)).size_bytes())


def _reachability(config: Config) -> dict[str, Any]:
    from batchlabel.sync.client import (
        LabelStudioError,
        LabelStudioUnavailableError,
        RetryPolicy,
        connect,
        find_project,
    )

    if config.embedded_label_studio:
        return {"state": "embedded", "detail": "started by batchlabel up/run/watch; not started by status"}
    policy = RetryPolicy(max_attempts=2, deadline_s=5.0)
    try:
        ls = connect(config.label_studio, policy=policy)
        project = find_project(ls, config.label_studio.project, policy=policy)
    except LabelStudioError as error:
        return {"state": "refused", "url": config.label_studio.url, "detail": str(error)}
    except LabelStudioUnavailableError as error:
        return {"state": "unreachable", "url": config.label_studio.url, "detail": str(error)}
    detail = f"project {config.label_studio.project!r} " + (f"id {project.id}" if project else "not created yet")
    return {"state": "ok", "url": config.label_studio.url, "detail": detail,
            "project_id": getattr(project, "id", None)}
