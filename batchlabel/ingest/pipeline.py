"""The ingestion pipeline: stable files -> hash + journal -> encode in batches -> pre-annotate -> push in bulk.

Threads and bounded queues (memory stays flat however many files arrive)::

    caller (discovery) --submit()--> [read + hash, dedupe, journal] --encode_q--> encode+predict --push_q--> push

- ``submit`` reads each file once and hashes those bytes; the bytes travel with the file to the encoder, which
  decodes exactly them (so the embedding belongs to the sha256 journaled, and nothing is read or hashed twice).
  ``encode_q`` therefore holds at most ``queue_size`` files' bytes.
- Batching happens once: the encode thread gathers up to ``model.batch_size`` files, waiting at most
  ``model.max_wait_ms`` for company, and the encoder encodes that batch without a second wait.
- ``submit`` blocks when ``encode_q`` is full (back-pressure on discovery).
- Every stage transition is committed to the journal before the next side effect; a push is marked
  ``push_started`` before its request, and after an error whose outcome is unknown the batch is reconciled with
  Label Studio (by image hash) before it is retried, so nothing is duplicated.
- Label Studio unreachable (network errors, 5xx): the push thread waits with backoff and jitter and retries,
  forever in ``watch`` and up to ``unavailable_limit_s`` in ``run``; files stay journaled as ``predicted``.
- A file deleted before its push is dropped from the journal (logged), never pushed.
- Label Studio refusing (4xx): the chunk is split to find the refused files, which are marked failed with Label
  Studio's message.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchlabel.infer.confine import PathConfinementError, confine_path
from batchlabel.infer.images import ReadImage, read_image_file
from batchlabel.ingest.discovery import StableFile
from batchlabel.ingest.sink import LabelStudioSink, PushItem, predictions_of, stale_predictions_of
from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.infer.embedding import ImageEmbedding
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.ray_encode import PredictionSpool

log = logging.getLogger(__name__)

_DONE = object()


@dataclass
class WorkItem:
    """One file moving through the pipeline (``path`` absolute, ``rel_path`` POSIX under the root); ``source``: its
    bytes as read and hashed by ``submit`` (``sha256`` is theirs), what the encoder decodes."""

    rel_path: str
    path: Path
    source: ReadImage
    task: dict | None = None  # the existing Label Studio task (full dict in boxes/points modes)
    complete: bool = False  # the task already has the current prediction: encode only (for the store)

    @property
    def sha256(self) -> str:
        return self.source.sha256


@dataclass
class Counters:
    """What a run did; ``failed`` holds (rel_path, stage, reason)."""

    discovered: int = 0
    unchanged: int = 0
    duplicates: int = 0
    encoded: int = 0
    cached: int = 0
    predicted: int = 0
    predicted_on_cluster: int = 0
    pushed: int = 0
    already_in_label_studio: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "discovered": self.discovered, "unchanged": self.unchanged, "duplicates": self.duplicates,
            "encoded": self.encoded, "cached": self.cached, "predicted": self.predicted,
            "predicted_on_cluster": self.predicted_on_cluster, "pushed": self.pushed,
            "already_in_label_studio": self.already_in_label_studio, "push_batches": self.batches,
            "failed": [{"path": p, "stage": s, "reason": r} for p, s, r in self.failed],
        }


class Pipeline:
    """Runs the stages for files handed to :meth:`submit`; :meth:`close` drains and joins.

    Args:
        config: the validated config.
        journal: the ingestion journal.
        sink: the Label Studio side (opened).
        encoder: a ``BatchEncoder`` (``encode_files(paths)``, ``model_id``).
        decoder: a ``MaskDecoder`` for the encoder's model (unused in mode ``none``).
        model_version: this run's prediction version (:func:`batchlabel.annotate.preannotate.model_version_for`).
        stop: set to stop early (watch's SIGINT/SIGTERM): the batch in flight finishes, queued files stay journaled.
        push_max_wait_s: how long the first file of a push batch waits for company.
        unavailable_limit_s: give up pushing after Label Studio was unreachable this long (None: never).
        on_progress: called with each finished file's rel_path (progress bars).
        cluster_predictions: ``run --ray``'s predictions made by the actors; a file's is used instead of decoding
            here when it was made for the same sha256 and model version.
    """

    def __init__(
        self,
        config: Config,
        journal: Journal,
        sink: LabelStudioSink,
        encoder: Any,
        decoder: Any,
        *,
        model_version: str,
        stop: threading.Event | None = None,
        queue_size: int = 64,
        push_max_wait_s: float = 0.2,
        unavailable_limit_s: float | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 10.0,
        on_progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] | None = None,
        cluster_predictions: PredictionSpool | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.sink = sink
        self.encoder = encoder
        self.decoder = decoder
        self.model_version = model_version
        self.stop = stop or threading.Event()
        self.batch_size = max(1, int(config.model.batch_size))
        self.encode_wait_s = config.model.max_wait_ms / 1000.0
        self.push_max_wait_s = push_max_wait_s
        self.unavailable_limit_s = unavailable_limit_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.on_progress = on_progress
        self.cluster_predictions = cluster_predictions
        self._sleep = sleep or (lambda s: self.stop.wait(s))
        self.counters = Counters()
        self.not_pushed: list[str] = []
        self._lock = threading.Lock()
        self._encode_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._push_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._in_flight: set[str] = set()
        self._threads = [
            threading.Thread(target=self._encode_loop, name="batchlabel-encode", daemon=True),
            threading.Thread(target=self._push_loop, name="batchlabel-push", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- stage 1: hash, dedupe, journal (caller's thread) ----------------------------------------------------------
    def submit(self, stable: StableFile) -> None:
        """Read and hash a stable file, journal it and queue the work it needs (blocks while the pipeline is full)."""
        rel = stable.rel_path
        with self._lock:
            if rel in self._in_flight:
                return  # already moving; a newer version is picked up by its next event
        try:
            confine_path(stable.path, self.config.storage.root)
        except PathConfinementError as error:
            if error.missing:
                self.journal.forget(rel)
            else:
                self._fail(rel, "discover", error.reason, None)
            return
        try:
            source = read_image_file(stable.path)
        except FileNotFoundError:
            self.journal.forget(rel)
            return
        except OSError as error:
            self._fail(rel, "hash", f"cannot read file: {error.strerror or error}", None)
            return
        sha = source.sha256
        new = self.journal.mark_discovered(rel, sha, size=stable.size, mtime_ns=stable.mtime_ns)
        record = self.journal.get(rel)
        if not new and record is not None and record.stage == "failed" and self.journal.retry_due(record):
            log.info("%s: retrying after a failure that can pass (attempt %d): %s", rel, record.attempts + 1,
                     record.last_error)
        elif not new and record is not None and record.stage in ("pushed", "duplicate", "failed"):
            self.counters.unchanged += 1
            return
        self.counters.discovered += 1
        owner = self.journal.owner_of(sha, exclude=rel)
        if owner is not None and owner.stage != "failed" and (self.config.storage.root / owner.rel_path).exists():
            self.journal.mark_duplicate(rel, sha, owner.rel_path, owner.task_id)
            self.counters.duplicates += 1
            log.info("%s: same content as %s, no second task", rel, owner.rel_path)
            self._progress(rel)
            return
        task = self._existing_task(rel, sha, record.task_id if record is not None else None, refresh=new)
        if task is not None and task.get("_rel_path") not in (None, rel):
            self.journal.mark_duplicate(rel, sha, str(task["_rel_path"]), int(task["id"]))
            self.counters.duplicates += 1
            log.info("%s: same content as %s (task %s), no second task", rel, task["_rel_path"], task["id"])
            self._progress(rel)
            return
        item = WorkItem(rel, stable.path, source, task)
        item.complete = task is not None and self.sink.complete_task(rel, sha) is not None
        with self._lock:
            self._in_flight.add(rel)
        self._put(self._encode_q, item)

    def _existing_task(self, rel: str, sha: str, task_id: int | None, *, refresh: bool) -> dict | None:
        """The Label Studio task standing for this file, if one exists (the index, then the journal's task id;
        ``refresh``: read the task itself, e.g. for a new version whose old predictions are replaced)."""
        index = self.sink.index
        if index is not None:
            task = index.by_sha.get(sha)
            if task is None:
                task = index.by_path.get(rel)
            if task is not None:
                return task
        if task_id is not None:
            if refresh or self.config.preannotate.mode in ("boxes", "points"):
                try:
                    task = self.sink.task(task_id)
                except (LabelStudioError, LabelStudioUnavailableError) as error:
                    log.warning("%s: cannot read task %s (%s); predicting without its prompts", rel, task_id, error)
                    task = {"id": task_id}
            else:
                task = {"id": task_id}
            task["_rel_path"] = rel
            return task
        return None

    def _put(self, target: queue.Queue, item: object) -> None:
        while True:
            try:
                target.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.stop.is_set() and item is not _DONE:
                    return

    def _progress(self, rel: str) -> None:
        if self.on_progress is not None:
            self.on_progress(rel)

    def _fail(self, rel: str, stage: str, reason: str, sha: str | None) -> None:
        self.journal.mark_failed(rel, stage, reason, sha)
        with self._lock:
            self.counters.failed.append((rel, stage, reason))
            self._in_flight.discard(rel)
        log.warning("%s: %s failed: %s", rel, stage, reason)
        self._progress(rel)

    # -- stage 2: encode in batches, pre-annotate -------------------------------------------------------------------
    def _next_batch(self, source: queue.Queue, size: int, wait_s: float) -> tuple[list[Any], bool]:
        """Up to ``size`` items: block for the first, then wait at most ``wait_s`` for more. (items, source done)."""
        first = source.get()
        if first is _DONE:
            return [], True
        batch = [first]
        deadline = time.monotonic() + wait_s
        while len(batch) < size:
            remaining = deadline - time.monotonic()
            try:
                item = source.get(timeout=max(0.0, remaining)) if remaining > 0 else source.get_nowait()
            except queue.Empty:
                break
            if item is _DONE:
                return batch, True
            batch.append(item)
        return batch, False

    def _encode_loop(self) -> None:
        done = False
        while not done:
            batch, done = self._next_batch(self._encode_q, self.batch_size, self.encode_wait_s)
            if batch and not self.stop.is_set():  # on stop, queued files stay journaled for the next start
                try:
                    self._encode_batch(batch)
                except Exception as error:  # keep the daemon alive: journal the batch as failed, go on
                    log.exception("encode batch failed")
                    for item in batch:
                        self._fail(item.rel_path, "encode", f"{type(error).__name__}: {error}", item.sha256)
            elif batch:
                with self._lock:
                    self._in_flight.difference_update(item.rel_path for item in batch)
        self._put(self._push_q, _DONE)

    def _encode_batch(self, batch: list[WorkItem]) -> None:
        by_path = {str(item.path): item for item in batch}
        for result in self.encoder.encode_files([item.source for item in batch], gathered=True):
            item = by_path.get(str(result.path))
            if item is None:
                continue
            if (result.error is not None or result.embedding is None) and not item.path.exists():
                self._vanished(item.rel_path)
                continue
            if result.error is not None or result.embedding is None:
                self._fail(item.rel_path, "encode", result.error or "no embedding", item.sha256)
                continue
            self.journal.mark_encoded(item.rel_path, item.sha256, self.encoder.model_id)
            with self._lock:
                self.counters.encoded += 1
                self.counters.cached += int(bool(result.cached))
            if item.complete:
                assert item.task is not None
                self.journal.mark_pushed(item.rel_path, int(item.task["id"]),
                                         next(iter(predictions_of(item.task, self.model_version)), None),
                                         self.model_version)
                with self._lock:
                    self.counters.already_in_label_studio += 1
                    self._in_flight.discard(item.rel_path)
                self._progress(item.rel_path)
                continue
            self._predict(item, result.embedding)

    def _predict(self, item: WorkItem, embedding: ImageEmbedding) -> None:
        from batchlabel.annotate.preannotate import PromptSourceError, preannotate

        made = self.cluster_predictions.get(item.rel_path) if self.cluster_predictions is not None else None
        if made is not None and (made.sha256, made.model_version) == (item.sha256, self.model_version):
            if made.error is not None:
                self._fail(item.rel_path, "predict", made.error, item.sha256)
                return
            prediction = made.prediction
            with self._lock:
                self.counters.predicted_on_cluster += int(prediction is not None)
        else:
            task = {"data": {"image": _image_url(item.rel_path)}, **(item.task or {})}  # the image's path for detect
            try:
                prediction = preannotate(self.config, self.decoder, embedding, task)
            except (PromptSourceError, ValueError) as error:
                self._fail(item.rel_path, "predict", str(error), item.sha256)
                return
        self.journal.mark_predicted(item.rel_path, self.model_version)
        with self._lock:
            self.counters.predicted += int(prediction is not None)
        push = PushItem(item.rel_path, item.sha256, prediction)
        if item.task is not None:
            push.task_id = int(item.task["id"])
            push.new_version = (item.task.get("meta") or {}).get("sha256") != item.sha256
            push.replace_prediction_ids = stale_predictions_of(item.task, self.model_version)
            if push.new_version:
                push.replace_prediction_ids += predictions_of(item.task, self.model_version)
        self._put(self._push_q, push)

    # -- stage 3: push in bulk --------------------------------------------------------------------------------------
    def _push_loop(self) -> None:
        done = False
        chunk = self.sink.chunk_size
        while not done:
            batch, done = self._next_batch(self._push_q, chunk, self.push_max_wait_s)
            if batch:
                self._push_with_retries(batch)

    def _push_with_retries(self, batch: list[PushItem]) -> None:
        attempt = 0
        unavailable_since: float | None = None
        uncertain = False
        while batch:
            if uncertain:
                try:
                    complete, batch = self.sink.reconcile(batch)
                except LabelStudioUnavailableError as error:
                    if not self._wait_after(error, attempt, unavailable_since, batch):
                        return
                    attempt += 1
                    unavailable_since = unavailable_since or time.monotonic()
                    continue
                for rel, task_id in complete.items():
                    self._pushed(rel, task_id, reconciled=True)
                uncertain = False
                if not batch:
                    return
            batch = self._drop_vanished(batch)
            if not batch:
                return
            self.journal.mark_push_started(item.rel_path for item in batch)
            started = time.perf_counter()
            try:
                done = self._push_splitting(batch)
            except LabelStudioUnavailableError as error:
                uncertain = True
                unavailable_since = unavailable_since or time.monotonic()
                if not self._wait_after(error, attempt, unavailable_since, batch):
                    return
                attempt += 1
                continue
            for rel, task_id in done.items():
                self._pushed(rel, task_id)
            with self._lock:
                self.counters.batches += 1
            log.info("pushed %d task(s) with %d prediction(s) in %.2f s", len(done),
                     sum(1 for item in batch if item.prediction is not None and item.rel_path in done),
                     time.perf_counter() - started)
            return

    def _drop_vanished(self, batch: list[PushItem]) -> list[PushItem]:
        """Files deleted since they were found are not pushed (their task's image would 404)."""
        kept = []
        for item in batch:
            if (self.config.storage.root / item.rel_path).is_file():
                kept.append(item)
            else:
                self._vanished(item.rel_path)
        return kept

    def _vanished(self, rel: str) -> None:
        """``rel`` was deleted while in the pipeline: dropped from the journal with a log line, never a task."""
        self.journal.forget(rel)
        with self._lock:
            self._in_flight.discard(rel)
        log.info("%s: deleted before its task was pushed; dropped from the journal", rel)
        self._progress(rel)

    def _wait_after(self, error: Exception, attempt: int, since: float | None, batch: list[PushItem]) -> bool:
        """Back off after Label Studio was unavailable; False = give up (files stay journaled as predicted)."""
        elapsed = time.monotonic() - (since or time.monotonic())
        give_up = self.stop.is_set() or (self.unavailable_limit_s is not None and elapsed > self.unavailable_limit_s)
        if give_up:
            reason = f"Label Studio unavailable: {error}"
            for item in batch:
                self.journal.mark_attempt_error(item.rel_path, reason)
            with self._lock:
                self.not_pushed.extend(item.rel_path for item in batch)
                self._in_flight.difference_update(item.rel_path for item in batch)
            log.error("giving up pushing %d file(s) for now (%s); they are pushed by the next run", len(batch), error)
            return False
        delay = random.random() * min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt, 10))
        log.warning("Label Studio unavailable (%s); retrying %d file(s) in %.1f s", error, len(batch), delay)
        self._sleep(delay)
        return True

    def _push_splitting(self, batch: list[PushItem]) -> dict[str, int]:
        """Push; on a 4xx split the batch to isolate and fail the refused files."""
        try:
            return self.sink.push(batch)
        except LabelStudioError as error:
            if len(batch) == 1:
                item = batch[0]
                self._fail(item.rel_path, "push", error.message, item.sha256)
                return {}
            middle = len(batch) // 2
            done = self._push_splitting(batch[:middle])
            done.update(self._push_splitting(batch[middle:]))
            return done

    def _pushed(self, rel: str, task_id: int, *, reconciled: bool = False) -> None:
        self.journal.mark_pushed(rel, task_id, None, self.model_version)
        with self._lock:
            self.counters.pushed += 1
            self._in_flight.discard(rel)
        if reconciled:
            log.info("%s: found in Label Studio as task %s (reconciled)", rel, task_id)
        self._progress(rel)

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        with self._lock:
            return bool(self._in_flight)

    def close(self, timeout_s: float | None = None) -> None:
        """No more files: drain the queues (or, after ``stop``, just the batch in flight) and join the threads."""
        self._put(self._encode_q, _DONE)
        for thread in self._threads:
            thread.join(timeout_s)


def _image_url(rel_path: str) -> str:
    from batchlabel.sync.client import image_url

    return image_url(rel_path)
