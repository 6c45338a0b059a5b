"""``batchlabel run``, ``watch`` and ``status``: ingestion of the document root into Label Studio.

- ``run CONFIG [--json] [--no-progress] [--retry-failed]``: one pass over the document root (waiting for files still
  being written), then exit: 0 when everything pending was pushed, 1 when some files failed or could not be pushed
  (each listed), 2 on a config error (including a Label Studio key it refuses). Failures that can pass (disk full,
  Label Studio down, out of memory: :mod:`batchlabel.ingest.retry`) are retried by every pass with back-off
  (``watch`` checks every few seconds); ``--retry-failed`` retries the others too.
- ``watch CONFIG [--summary-every-s S]``: the daemon: initial scan, then a watchdog observer; runs until SIGINT or
  SIGTERM, finishes the batch in flight (queued files stay journaled for the next start) and exits 0. One log line
  per pushed batch and a summary every ``S`` seconds; with ``train.every_n_annotations`` the reviewed count is read
  as often and a background training started when due (:mod:`batchlabel.commands.auto_train`). With
  ``preannotate.detector.model: trained`` it adopts each model ``batchlabel train`` publishes (checked every
  ``MODEL_CHECK_S``): the unreviewed tasks are predicted again and new files get it, without a restart.
- ``status CONFIG [--json]``: counts per stage, failures with reasons (transient or permanent, and when a transient
  one is retried), deleted files whose task is kept, annotated files overwritten with new content, the writer lock's
  holder, embedding-store size, the trained models (``batchlabel train``) and a background training in
  progress, Label Studio reachability.

One writer per cache folder (:mod:`batchlabel.ingest.writer_lock`), held for the command's life: ``run`` finding a
``watch``/``up`` holding it leaves the files to that daemon and exits 0 (a cron job next to the daemon pages no one);
finding a ``run``/``encode``/``train`` it waits up to ``--lock-wait-s`` seconds (default 300), naming the holder, and
exits 1 if it is still held (the pass did not happen; the files wait for the next run). ``watch`` waits for a
run/encode/train to end; another daemon holding it is a usage error (exit 2). Moved, deleted and overwritten files:
:mod:`batchlabel.ingest.missing` (``run --prune-missing`` deletes the tasks of deleted files that hold no annotation).

Embedded Label Studio (``label_studio.url: null``): ``batchlabel up`` calls :func:`watch` with the running server's
URL and key (and its loaded model); without them, ``run``/``watch`` start the embedded server themselves
(:func:`open_label_studio`) and stop it on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from batchlabel.commands.progress import FileProgress, file_progress
from batchlabel.config import Config

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

    from batchlabel.infer.engine import Engine
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.missing import MissingFiles
    from batchlabel.ingest.pipeline import Pipeline
    from batchlabel.ingest.ray_encode import PredictionSpool
    from batchlabel.ingest.sink import LabelStudioSink
    from batchlabel.ingest.writer_lock import WriterLockBusyError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG = 0, 1, 2
#: ``run`` gives up pushing after Label Studio has been unreachable this long (files stay journaled).
RUN_UNAVAILABLE_LIMIT_S = 600.0
POLL_S = 0.05
RETRY_CHECK_S = 5.0  # how often watch looks for transient failures due for a retry
#: How often (seconds) watch looks for deleted files that keep a task (one stat per task; moves done as copy+delete).
MISSING_CHECK_S = 600.0
#: How often ``watch`` looks for a newer model from ``batchlabel train`` (``detector.model: trained``; reads a
#: folder): one appearing is adopted (:func:`_adopt_newest_model`).
MODEL_CHECK_S = 10.0
#: ``run`` waits this long (seconds; ``--lock-wait-s``) for another run/encode/train writing the same cache folder.
RUN_LOCK_WAIT_S = 300.0


class _ConfigProblemError(Exception):
    """Printed as a config error (exit 2)."""


@contextmanager
def open_label_studio(config: Config, *, url: str | None = None, api_key: str | None = None,
                      embedded: Callable[[str, str], None] | None = None) -> Iterator[LabelStudio]:
    """A connected SDK client for the configured Label Studio.

    Embedded server (``label_studio.url`` null): ``url``/``api_key`` of one already running (``batchlabel up``; for a
    process ``up`` started, :func:`batchlabel.config.running_label_studio_override`), else the embedded server is
    started here (``EmbeddedLabelStudio.from_config``) and stopped when the block exits. ``embedded(url, api_key)``
    is told the embedded server's address and key (so a background ``train`` child attaches to it instead of
    starting a second server on the same data folder).
    """
    from batchlabel.sync.client import LabelStudioError, connect

    key = api_key
    server = None
    if config.embedded_label_studio and url is None:
        from batchlabel.config import running_label_studio_override

        running = running_label_studio_override()  # a child of `up` (background train): the server it runs
        if running is not None:
            url, key = running
    if config.embedded_label_studio and url is None:
        from batchlabel.sync.server import EmbeddedLabelStudio

        server = EmbeddedLabelStudio.from_config(config)
        server.start()
        url, key = server.url, server.credentials.api_key
    if config.embedded_label_studio and embedded is not None and url is not None and key is not None:
        embedded(url, key)
    try:
        try:
            ls = connect(config.label_studio, url=url, api_key=key)
        except LabelStudioError as error:
            raise _ConfigProblemError(f"label_studio: {error}") from None
        yield ls
    finally:
        if server is not None:
            server.stop()


def _load_engine(config: Config, model: Any = None) -> Engine:
    """Model, store, encoder and decoder (none in mode ``none``); ``model`` reuses an already loaded one
    (``batchlabel up`` shares the backend's model with the watcher)."""
    from batchlabel.infer.engine import build_engine
    from batchlabel.infer.weights import WeightsUnavailableError

    try:
        return build_engine(config.model, config.cache, model=model,
                            decoder="batch" if config.preannotate.mode != "none" else "none")
    except WeightsUnavailableError as error:
        raise _ConfigProblemError(f"model: weights unavailable: {error}") from None


@dataclass
class _Session:
    journal: Journal
    pipeline: Pipeline
    tracker: Any
    sink: LabelStudioSink
    config: Config  # as run: without predictions while ``detector.model: trained`` has no model yet
    model_version: str
    trained_version: str | None  # the ``batchlabel train`` model it predicts with (``detector.model: trained``)
    model: Any = None  # the loaded SAM model, reused by the sessions that follow (a model adoption)

    @property
    def project_id(self) -> int:
        return self.sink.project_id


def _without_untrained_detector(config: Config) -> tuple[Config, str | None]:
    """(``config`` itself, or, when ``preannotate.detector.model: trained`` has no model yet, a copy with
    ``preannotate.mode: none``: tasks without predictions, said once, here; the version of the trained model it
    predicts with, None when it uses none)."""
    from batchlabel.annotate.detect import resolve_trained
    from batchlabel.annotate.detectors.base import NoTrainedModelError

    detector = config.preannotate.detector
    if config.preannotate.mode != "detect" or detector is None or not detector.trained:
        return config, None
    try:
        _, _, trained_version = resolve_trained(config, config.label_studio.labels)
    except NoTrainedModelError as error:
        log.warning("%s; this run creates the tasks without predictions", error)
        return config.model_copy(update={"preannotate": config.preannotate.model_copy(update={"mode": "none"})}), None
    return config, trained_version


def _start(config: Config, ls: LabelStudio, *, stop: threading.Event, unavailable_limit_s: float | None,
           model: Any = None, on_progress: Callable[[str], None] | None = None,
           cluster_predictions: PredictionSpool | None = None, keep_older_predictions: bool = False,
           tracker: Any = None) -> _Session:
    """A session: the journal, sink and pipeline with ``config``'s model version; ``tracker`` reuses a stability
    tracker (``watch`` adopting a new model keeps its folder watcher's), None = a new one."""
    from batchlabel.annotate.preannotate import model_version_for
    from batchlabel.ingest.discovery import PathFilter, StabilityTracker
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.pipeline import Pipeline
    from batchlabel.ingest.sink import LabelStudioSink

    root = config.storage.root
    if not root.is_dir():
        raise _ConfigProblemError(f"storage.root: {root} is not a folder")
    config, trained_version = _without_untrained_detector(config)
    engine = _load_engine(config, model)
    try:
        model_version = model_version_for(config, engine.model_id)  # mode detect: loads the detector, checks classes
    except ValueError as error:
        raise _ConfigProblemError(f"preannotate.detector: {error}") from None
    journal = Journal(config.journal_path)
    sink = LabelStudioSink(ls, config, model_version)
    sink.open()
    uncertain = any(record.push_started for record in journal.pending())
    if journal.is_empty() or uncertain or keep_older_predictions or config.preannotate.mode in ("boxes", "points"):
        sink.load_index()  # reconcile with what Label Studio already has (lost journal, interrupted push)
    if tracker is None:
        tracker = StabilityTracker(root, PathFilter(config.storage.include, config.storage.exclude),
                                   stable_s=config.storage.stable_s)
    pipeline = Pipeline(config, journal, sink, engine.encoder, engine.decoder, model_version=model_version,
                        stop=stop, unavailable_limit_s=unavailable_limit_s, on_progress=on_progress,
                        cluster_predictions=cluster_predictions, keep_older_predictions=keep_older_predictions)
    return _Session(journal, pipeline, tracker, sink, config, model_version, trained_version, engine.model)


class _RunProgress:
    """``run``'s per-file progress: the tqdm bar (on a terminal) and, in mode ``detect``, the detector's total ETA
    (:mod:`batchlabel.annotate.detect_eta`: logged once, then the bar's postfix). Called from the pipeline's threads."""

    def __init__(self, config: Config, bar: FileProgress) -> None:
        self.config = config
        self.bar = bar
        self.eta: Any = None
        self.done = 0
        self._lock = threading.Lock()

    def start(self, total: int) -> None:
        """After the scan: ``total`` files; the detector (loaded by ``_start``) is looked up for its ETA."""
        self.bar.set_total(total)
        if self.config.preannotate.mode == "detect":
            from batchlabel.annotate.detect import get_detector
            from batchlabel.annotate.detect_eta import DetectionEta
            from batchlabel.annotate.preannotate import control_names

            self.eta = DetectionEta(get_detector(self.config, control_names(self.config)[1]).detector_id, total)

    def __call__(self, _rel: str) -> None:
        from batchlabel.annotate.detect import detector_timings

        with self._lock:
            self.done += 1
            if self.eta is not None:
                self.bar.postfix(self.eta.update(self.done, detector_timings(self.eta.detector_id)))
            self.bar.update()


def _initial_scan(session: _Session, config: Config) -> int:
    from batchlabel.ingest.discovery import scan

    count = 0
    for path in scan(config.storage.root, session.tracker.path_filter):
        session.tracker.observe(path)
        count += 1
    for record in session.journal.pending():  # journaled work whose file vanished meanwhile
        if not (config.storage.root / record.rel_path).exists():
            session.journal.forget(record.rel_path)
    for record in session.journal.failures():  # a failed file without a task that is gone: nothing left to retry
        if record.task_id is None and not (config.storage.root / record.rel_path).exists():
            session.journal.forget(record.rel_path)
            log.info("%s: gone from the document root; its failure (%s) dropped from the journal", record.rel_path,
                     record.last_error)
    return count


def _reconcile_missing(session: _Session, config: Config, *, prune: bool, log_kept: bool = True) -> MissingFiles:
    """:func:`~batchlabel.ingest.missing.reconcile_missing`; Label Studio unreachable or refusing is a warning (the
    deleted files are looked at again by the next pass), never the end of the run's report."""
    from batchlabel.ingest.missing import MissingFiles, reconcile_missing
    from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

    try:
        return reconcile_missing(config, session.journal, session.sink, prune=prune, log_kept=log_kept)
    except (LabelStudioError, LabelStudioUnavailableError) as error:
        log.warning("deleted and moved files not reconciled with Label Studio this time (%s); the next pass tries "
                    "again", error)
        return MissingFiles()


def _observe_due_retries(session: _Session, config: Config) -> None:
    """Hand transient failures whose back-off has passed to the stability tracker again (``watch``; ``run``'s scan
    sees every file anyway)."""
    for record in session.journal.due_retries():
        path = config.storage.root / record.rel_path
        if path.exists():
            session.tracker.observe(path, atomic=True)


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
    if summary.get("moved") or summary.get("overwritten_annotated"):
        lines.append(f"moved {summary['moved']} (their tasks follow them), annotated then overwritten "
                     f"{summary['overwritten_annotated']} (see the warnings)")
    for gone in summary.get("missing", ()):
        lines.append(f"DELETED {gone['path']}: task {gone['task_id']} kept (--prune-missing deletes it unless "
                     "it is annotated)")
    for gone in summary.get("pruned", ()):
        lines.append(f"PRUNED {gone['path']}: deleted, its unannotated task {gone['task_id']} removed")
    for failure in summary["failures"]:
        lines.append(f"FAILED {failure['path']}: {failure['stage']}: {failure['reason']}")
    for rel in summary["not_pushed"]:
        lines.append(f"NOT PUSHED {rel}: Label Studio unavailable; pushed by the next run")
    return lines


def _watch_summary_line(session: _Session) -> str:
    """``watch``'s periodic line: where the journal's files stand, then what this session did, e.g. ``journal: pushed
    120, duplicate 3, failed 1, in progress 4; since start: encoded 7, predicted 7, pushed 7; waiting to be stable 2``
    (the journal's per-stage counts alone read "encoded 0" once everything is pushed)."""
    stages = session.journal.counts()
    in_progress = stages["discovered"] + stages["encoded"] + stages["predicted"]
    done = session.pipeline.counters
    return (f"journal: pushed {stages['pushed']}, duplicate {stages['duplicate']}, failed {stages['failed']}, "
            f"in progress {in_progress}; since start: encoded {done.encoded}, predicted {done.predicted}, "
            f"pushed {done.pushed}; waiting to be stable {session.tracker.pending()}")


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
    """One ingestion pass under the cache folder's writer lock; see the module docstring for exit codes."""
    from batchlabel.ingest.writer_lock import WriterLockBusyError, acquire

    wait_s = float(getattr(args, "lock_wait_s", RUN_LOCK_WAIT_S) or 0.0)
    try:
        with acquire(config, command="run", wait_s=wait_s,
                     should_stop_waiting=lambda holder: holder is not None and holder.is_daemon):
            return _run_pass(config, args)
    except WriterLockBusyError as busy:
        return _report_busy(args, busy, waited_s=wait_s)


def _report_busy(args: argparse.Namespace, busy: WriterLockBusyError, *, waited_s: float) -> int:
    """``run`` found another writer: a daemon takes the files (exit 0); anything else still held after the wait
    means this pass did not happen (exit 1; the files wait for the next run)."""
    holder = busy.holder
    daemon = holder is not None and holder.is_daemon
    if daemon:
        message = f"{busy}; it takes the new files, nothing for this run to do"
    else:
        message = (f"{busy}; still held after waiting {waited_s:g} s (--lock-wait-s): this pass did not run, the files "
                   "are taken by the next run")
    if getattr(args, "json", False):
        print(json.dumps({"skipped": message, "writer": asdict(holder) if holder is not None else None}, indent=2))
    print(f"batchlabel run: {message}", file=sys.stderr)
    return EXIT_OK if daemon else EXIT_FAILURES


def _run_pass(config: Config, args: argparse.Namespace) -> int:
    """The pass itself (the caller holds the writer lock)."""
    as_json = bool(getattr(args, "json", False))
    started = time.perf_counter()
    stop = threading.Event()
    cluster, cluster_predictions = None, None
    if getattr(args, "ray", None) is not None:  # encode (and predict) on a Ray cluster first; the rest as below
        from batchlabel.commands.ray_encode import prefetch_on_cluster
        from batchlabel.ingest.journal import Journal
        from batchlabel.ingest.ray_encode import RayUnavailableError

        if getattr(args, "retry_failed", False):  # before the cluster's work list, so the actors take them too
            with Journal(config.journal_path) as journal:
                log.info("--retry-failed: %d failed file(s) queued again", journal.retry_failed())
        try:
            cluster_summary, cluster_predictions = prefetch_on_cluster(config, args)
        except RayUnavailableError as error:
            print(f"batchlabel run: {error}", file=sys.stderr)
            return EXIT_CONFIG
        cluster = cluster_summary.as_dict()
    try:
        with open_label_studio(config) as ls, file_progress(args, total=None, desc="ingest") as progress:
            run_progress = _RunProgress(config, progress)
            session = _start(config, ls, stop=stop, unavailable_limit_s=RUN_UNAVAILABLE_LIMIT_S,
                             on_progress=run_progress, cluster_predictions=cluster_predictions)
            run_progress.config = session.config
            try:
                if getattr(args, "retry_failed", False) and cluster is None:
                    log.info("--retry-failed: %d failed file(s) queued again", session.journal.retry_failed())
                scanned = _initial_scan(session, config)
                run_progress.start(scanned)
                while session.tracker.pending():
                    if not _feed(session):
                        time.sleep(min(POLL_S * 4, session.tracker.next_due_s() or POLL_S))
                session.pipeline.close()
                missing = _reconcile_missing(session, config, prune=bool(getattr(args, "prune_missing", False)))
            except KeyboardInterrupt:
                stop.set()
                session.pipeline.close()
                raise
            summary = _summary(session, started, scanned)
            summary["moved"] += len(missing.relocated)
            summary["missing"] = [{"path": rel, "task_id": task_id} for rel, task_id in missing.kept]
            summary["pruned"] = [{"path": rel, "task_id": task_id} for rel, task_id in missing.pruned]
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
    finally:
        if cluster_predictions is not None:
            cluster_predictions.close()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for line in _report_lines(summary):
            print(line)
    return EXIT_FAILURES if summary["failures"] or summary["not_pushed"] else EXIT_OK


def repredict_unreviewed(config: Config, ls: LabelStudio, *, on_progress: Callable[[str], None] | None = None,
                         model: Any = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Predict again, with ``config``'s model version, every task of the project that has no annotation yet, through
    ``run``'s pipeline (journal, bulk push, the project switched to show this version). Once per model version: a
    file whose journaled prediction is of this version already is skipped. Predictions of other versions stay on
    the tasks. ``model``: an already loaded SAM model to reuse; ``stop``: set by the caller's signal handlers (the
    files not submitted yet wait for the next re-predict). Returns ``run``'s summary plus ``requeued`` (the files
    predicted again)."""
    from batchlabel.ingest.discovery import StableFile
    from batchlabel.sync.client import iter_tasks, rel_path_from_url

    started = time.perf_counter()
    stop = stop or threading.Event()
    session = _start(config, ls, stop=stop, unavailable_limit_s=RUN_UNAVAILABLE_LIMIT_S, model=model,
                     on_progress=on_progress, keep_older_predictions=True)
    try:
        model_version, project_id = session.model_version, session.project_id
        unreviewed = sorted({rel_path_from_url(str((task.get("data") or {}).get("image") or "")) or ""
                             for task in iter_tasks(ls, project_id) if not _has_annotation(task)} - {""})
        requeued = session.journal.requeue_for_version(unreviewed, model_version)
        log.info("re-predicting %d of %d unreviewed task(s) with %s", len(requeued), len(unreviewed), model_version)
        for rel in requeued:
            if stop.is_set():
                break
            path = config.storage.root / rel
            try:
                stat = path.stat()
            except FileNotFoundError:
                log.warning("%s: image deleted since it was ingested; not predicted again", rel)
                continue
            session.pipeline.submit(StableFile(path, rel, stat.st_size, stat.st_mtime_ns))
        session.pipeline.close()
        summary = _summary(session, started, len(unreviewed))
    except BaseException:
        session.pipeline.close()  # what was submitted finishes; the journal keeps the rest for the next re-predict
        raise
    finally:
        session.journal.close()
    summary["requeued"] = len(requeued)
    summary["model_version"] = model_version
    return summary


def _adopt_newest_model(session: _Session, config: Config, ls: LabelStudio, *, stop: threading.Event,
                        model: Any) -> _Session:
    """``watch``'s switch to the project's newest ``batchlabel train`` model (``detector.model: trained``): when it
    differs from the one ``session`` predicts with (or one appeared where there was none), finish the batch in
    flight, re-predict the unreviewed tasks with it (:func:`repredict_unreviewed`: the daemon holds the writer lock,
    so train left that to it) and return a new session with it, keeping ``session``'s stability tracker (and so the
    folder watcher feeding it); otherwise ``session`` itself. A config without ``detector.model: trained``: ``session``.
    """
    from batchlabel.annotate.trained_models import newest_model
    from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

    detector = config.preannotate.detector
    if config.preannotate.mode != "detect" or detector is None or not detector.trained:
        return session
    newest = newest_model(config.models_dir, config.label_studio.project)
    if newest is None or newest.version == session.trained_version:
        return session
    log.info("new trained model %s (was %s): finishing the batch in flight, then re-predicting the unreviewed tasks "
             "with it", newest.version, session.trained_version or "none: tasks without predictions")
    session.pipeline.close()
    session.journal.close()
    repredicted = True
    model = model if model is not None else session.model
    try:
        done = repredict_unreviewed(config, ls, model=model, stop=stop)
    except (LabelStudioError, LabelStudioUnavailableError, _ConfigProblemError) as error:
        log.warning("re-predicting the unreviewed tasks with %s failed: %s; tried again in %.0f s (the tasks done "
                    "already are not predicted again)", newest.version, error, MODEL_CHECK_S)
        repredicted = False
    else:
        log.info("re-predicted %d unreviewed task(s) with %s: pushed %d, %d failure(s)", done["requeued"],
                 done["model_version"], done["pushed"], len(done["failures"]))
    while True:  # the daemon lives on: a Label Studio outage or an unusable model is retried, never a crash
        try:
            adopted = _start(config, ls, stop=stop, unavailable_limit_s=None, model=model, tracker=session.tracker)
            break
        except (LabelStudioError, LabelStudioUnavailableError, _ConfigProblemError) as error:
            log.warning("starting the pipeline with %s failed: %s; trying again in %.0f s", newest.version, error,
                        MODEL_CHECK_S)
            if stop.wait(MODEL_CHECK_S):  # stopping: the old session (pipeline closed) with a journal to summarise
                from batchlabel.ingest.journal import Journal

                return dataclasses.replace(session, journal=Journal(config.journal_path))
    log.info("new files are predicted with %s", adopted.model_version)
    if not repredicted:  # the next check adopts it again, re-predicting what is left
        adopted.trained_version = session.trained_version
    return adopted


def _has_annotation(task: dict[str, Any]) -> bool:
    """A task someone reviewed: a non-cancelled annotation (or Label Studio's count of them)."""
    annotations = [a for a in task.get("annotations") or () if isinstance(a, dict) and not a.get("was_cancelled")]
    return bool(annotations) or int(task.get("total_annotations") or 0) > 0


def watch_command(config: Config, args: argparse.Namespace) -> int:
    """The ingestion daemon; exits 0 after SIGINT/SIGTERM (2 on a config error)."""
    return watch(config, summary_every_s=float(getattr(args, "summary_every_s", 60.0) or 60.0))


def watch(config: Config, *, summary_every_s: float = 60.0, label_studio_url: str | None = None,
          label_studio_api_key: str | None = None, model: Any = None, command: str = "watch") -> int:
    """The ingestion daemon with its collaborators given: a running embedded Label Studio (``label_studio_url``,
    ``label_studio_api_key``) and an already loaded ``model`` (both from ``batchlabel up``); None = start/load here.

    It holds the cache folder's writer lock (as ``command``: ``watch``, or ``up`` for up's watcher) for its life:
    while a ``run``/``encode``/``train`` holds it, it waits for that to finish; another daemon holding it is a usage
    error (exit 2: one daemon per cache folder)."""
    from batchlabel.ingest.writer_lock import WriterLockBusyError, acquire

    stop = threading.Event()
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with acquire(config, command=command, wait_s=math.inf,
                     should_stop_waiting=lambda holder: stop.is_set() or (holder is not None and holder.is_daemon)):
            return _watch_locked(config, stop, summary_every_s=summary_every_s, label_studio_url=label_studio_url,
                                 label_studio_api_key=label_studio_api_key, model=model)
    except WriterLockBusyError as busy:
        if stop.is_set():
            return EXIT_OK
        print(f"batchlabel {command}: {busy}; one ingestion daemon per cache folder: stop it first, or give this "
              "config another cache.dir", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watch_locked(config: Config, stop: threading.Event, *, summary_every_s: float, label_studio_url: str | None,
                  label_studio_api_key: str | None, model: Any) -> int:
    """The daemon's life (the caller holds the writer lock and handles the signals, which set ``stop``)."""
    from batchlabel.commands.auto_build import AutoBuilder
    from batchlabel.commands.auto_train import AutoTrainer
    from batchlabel.ingest.discovery import FolderWatcher

    started = time.perf_counter()
    endpoint: list[tuple[str, str]] = []  # the embedded server's, for background trainings to attach to
    try:
        with open_label_studio(config, url=label_studio_url, api_key=label_studio_api_key,
                               embedded=lambda url, key: endpoint.append((url, key))) as ls:
            session = _start(config, ls, stop=stop, unavailable_limit_s=None, model=model)
            watcher = FolderWatcher(session.tracker)
            watcher.start()  # before the scan: nothing created during the scan is missed
            scanned = _initial_scan(session, config)
            log.info("watching %s (%d file(s) found at start)", config.storage.root, scanned)
            next_summary = time.monotonic() + summary_every_s
            auto_builder = AutoBuilder(config, ls)
            running = endpoint[0] if endpoint else None
            auto_trainer = AutoTrainer(config, ls, session.project_id, check_every_s=summary_every_s,
                                       label_studio=running)
            next_retry = time.monotonic() + RETRY_CHECK_S
            next_missing, deleted_logged = time.monotonic() + MISSING_CHECK_S, 0
            next_model_check = time.monotonic() + MODEL_CHECK_S
            while not stop.is_set():
                _feed(session)
                if time.monotonic() >= next_model_check:
                    session = _adopt_newest_model(session, config, ls, stop=stop, model=model)
                    next_model_check = time.monotonic() + MODEL_CHECK_S
                auto_builder.poll()
                auto_trainer.poll()
                if time.monotonic() >= next_retry:
                    _observe_due_retries(session, config)
                    next_retry = time.monotonic() + RETRY_CHECK_S
                if time.monotonic() >= next_missing:  # logged when the number of deleted files changes
                    kept = len(_reconcile_missing(session, config, prune=False, log_kept=False).kept)
                    if kept != deleted_logged:
                        log.warning("%d file(s) deleted from %s still have tasks (kept; `batchlabel status` lists "
                                    "them)", kept, config.storage.root)
                        deleted_logged = kept
                    next_missing = time.monotonic() + MISSING_CHECK_S
                due = session.tracker.next_due_s()
                session.tracker.wait_for_change(min(1.0, due if due is not None else 1.0) or POLL_S)
                if time.monotonic() >= next_summary:
                    log.info("summary: %s", _watch_summary_line(session))
                    next_summary = time.monotonic() + summary_every_s
            log.info("stopping: finishing the batch in flight")
            watcher.stop()
            session.pipeline.close()
            auto_builder.join(timeout_s=600.0)
            auto_trainer.close()
            summary = _summary(session, started, scanned)
            session.journal.close()
            log.info("stopped: %s", _report_lines(summary)[0])
    except _ConfigProblemError as problem:
        print(f"batchlabel watch: config error\n{problem}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def status_command(config: Config, args: argparse.Namespace) -> int:
    """Counts per stage, failures, store size, Label Studio reachability; exit 0 (1 when there are failures)."""
    from batchlabel.ingest.journal import STAGES, Journal
    from batchlabel.ingest.missing import missing_records
    from batchlabel.ingest.retry import retry_at

    as_json = bool(getattr(args, "json", False))
    report: dict[str, Any] = {"journal": str(config.journal_path)}
    if config.journal_path.exists():
        with Journal(config.journal_path) as journal:
            report["stages"] = journal.counts()
            report["failures"] = [
                {"path": r.rel_path, "stage": r.failed_stage, "reason": r.last_error, "attempts": r.attempts,
                 "kind": "transient" if r.transient else "permanent",
                 "retry_in_s": (round(max(0.0, retry_at(attempts=r.attempts, failed_at=r.updated_at) - time.time()), 1)
                                if r.transient else None)}
                for r in journal.failures()
            ]
            report["waiting_for_label_studio"] = [
                {"path": r.rel_path, "reason": r.last_error} for r in journal.records(("predicted",)) if r.last_error
            ]
            report["deleted_with_task"] = [{"path": r.rel_path, "task_id": r.task_id}
                                           for r in missing_records(config, journal)]
            report["overwritten_annotated"] = [
                {"path": rel, "task_id": task_id, "annotations": count, "noticed_at": noticed}
                for rel, task_id, count, noticed in journal.overwritten_annotated()
            ]
    else:
        report["stages"] = dict.fromkeys(STAGES, 0)
        report["failures"] = []
        report["waiting_for_label_studio"] = []
        report["deleted_with_task"] = []
        report["overwritten_annotated"] = []
    from batchlabel.ingest.writer_lock import holder

    writer = holder(config)
    report["writer"] = asdict(writer) if writer is not None else None
    report["embedding_store_bytes"] = _store_size(config)
    report["models"] = _trained_models(config)
    report["training_in_progress"] = _training_in_progress(config)
    report["label_studio"] = _reachability(config)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print("stages: " + ", ".join(f"{k} {v}" for k, v in report["stages"].items()))
        for failure in report["failures"]:
            when = (f"transient, retried by the next pass in {failure['retry_in_s']:g} s or more"
                    if failure["kind"] == "transient" else "permanent, retried when the file changes or with "
                    "`run --retry-failed`")
            print(f"FAILED {failure['path']}: {failure['stage']}: {failure['reason']} ({when})")
        print("writer: " + (f"{writer.describe()} holds {config.cache.dir}" if writer is not None
                            else "none (no run/watch/encode is writing this cache folder)"))
        if report["deleted_with_task"]:
            print(f"deleted from the document root, task kept: {len(report['deleted_with_task'])} "
                  "(`batchlabel run --prune-missing` deletes the unannotated ones)")
        for gone in report["deleted_with_task"]:
            print(f"DELETED {gone['path']}: task {gone['task_id']} kept")
        if report["overwritten_annotated"]:
            print(f"annotated, then overwritten with new content: {len(report['overwritten_annotated'])} (the "
                  "annotations are of the old content: review these tasks)")
        for changed in report["overwritten_annotated"]:
            print(f"OVERWRITTEN {changed['path']}: task {changed['task_id']} holds {changed['annotations']} "
                  "annotation(s) of the old content")
        print(f"embedding store: {report['embedding_store_bytes'] / 1e6:.1f} MB in {config.embeddings_dir}")
        for model in report["models"]:
            metrics = " ".join(f"{key} {value:.3f}" for key, value in model["metrics"].items())
            print(f"model {model['version']}: {model['created']}, {model['reviewed_tasks']} reviewed task(s), "
                  f"{metrics or 'no metrics'}")
        training = report["training_in_progress"]
        if training is not None:
            print(f"training in progress: pid {training['pid']} since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(training['started']))} ({training['reason']}); "
                  f"log {training['log']}")
        reach = report["label_studio"]
        print(f"Label Studio: {reach['state']}" + (f" ({reach['detail']})" if reach.get("detail") else ""))
    return EXIT_FAILURES if report["failures"] else EXIT_OK


def _trained_models(config: Config) -> list[dict[str, Any]]:
    """The project's models from ``batchlabel train``, oldest first (version, date, reviewed tasks, metrics)."""
    from batchlabel.annotate.trained_models import list_models

    return [model.summary() for model in list_models(config.models_dir, config.label_studio.project)]


def _store_size(config: Config) -> int:
    if not config.embeddings_dir.exists():
        return 0
    from batchlabel.infer.store import EmbeddingStore

    return int(EmbeddingStore(config.embeddings_dir, max_bytes=config.cache.max_bytes).size_bytes())


def _training_in_progress(config: Config) -> dict[str, Any] | None:
    """The background training running for the project (``serve``'s or ``watch``'s), or None."""
    from batchlabel.annotate.background_training import training_in_progress
    from batchlabel.annotate.trained_models import project_models_dir

    running = training_in_progress(project_models_dir(config.models_dir, config.label_studio.project))
    return running.as_dict() if running is not None else None


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
