"""Stage 3 of the pipeline: push tasks and predictions to Label Studio in bulk, exactly once.

- A push is journaled ``push_started`` before its request. After an error whose outcome is unknown (Label Studio
  unreachable mid-request) the batch is reconciled with Label Studio by image hash before it is retried, so nothing
  is duplicated.
- Label Studio unreachable (network errors, 5xx): wait with exponential back-off and full jitter, then retry; forever
  in ``watch``, up to ``unavailable_limit_s`` in ``run`` (files stay journaled as ``predicted``, pushed next run).
- Label Studio refusing (4xx): the batch is split in halves until the refused files are isolated; those are failed
  with Label Studio's message, the rest is pushed.
- A file deleted before its push is dropped from the journal, never pushed (its task's image would 404).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING

from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.run_state import RunState
    from batchlabel.ingest.sink import LabelStudioSink, PushItem

log = logging.getLogger(__name__)

RETRY_BASE_S = 0.5
RETRY_MAX_S = 10.0


class PushStage:
    """Pushes batches of :class:`PushItem` with the rules above.

    Args:
        config: the validated config (the document root, to see files deleted meanwhile).
        journal: the ingestion journal.
        sink: the Label Studio side (opened).
        state: the run's shared state.
        model_version: this run's prediction version (journaled with each push).
        stop: set to stop early: back-off gives up at once (files stay journaled for the next start).
        unavailable_limit_s: give up after Label Studio was unreachable this long (None: never).
    """

    def __init__(self, config: Config, journal: Journal, sink: LabelStudioSink, state: RunState, *,
                 model_version: str, stop: threading.Event, unavailable_limit_s: float | None = None) -> None:
        self.config = config
        self.journal = journal
        self.sink = sink
        self.state = state
        self.model_version = model_version
        self.stop = stop
        self.unavailable_limit_s = unavailable_limit_s

    def push(self, batch: list[PushItem]) -> None:
        """Push ``batch`` (retrying, reconciling and splitting as needed); every file ends pushed, failed, dropped or
        left journaled as predicted."""
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
            self.state.count(batches=1)
            log.info("pushed %d task(s) with %d prediction(s) in %.2f s", len(done),
                     sum(1 for item in batch if item.prediction is not None and item.rel_path in done),
                     time.perf_counter() - started)
            return

    def _drop_vanished(self, batch: list[PushItem]) -> list[PushItem]:
        kept = []
        for item in batch:
            if (self.config.storage.root / item.rel_path).is_file():
                kept.append(item)
            else:
                self.state.vanished(item.rel_path)
        return kept

    def _wait_after(self, error: Exception, attempt: int, since: float | None, batch: list[PushItem]) -> bool:
        """Back off after Label Studio was unavailable; False = give up (files stay journaled as predicted)."""
        elapsed = time.monotonic() - (since or time.monotonic())
        give_up = self.stop.is_set() or (self.unavailable_limit_s is not None and elapsed > self.unavailable_limit_s)
        if give_up:
            reason = f"Label Studio unavailable: {error}"
            for item in batch:
                self.journal.mark_attempt_error(item.rel_path, reason)
            self.state.release((item.rel_path for item in batch), not_pushed=True)
            log.error("giving up pushing %d file(s) for now (%s); they are pushed by the next run", len(batch), error)
            return False
        delay = random.random() * min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(attempt, 10))
        log.warning("Label Studio unavailable (%s); retrying %d file(s) in %.1f s", error, len(batch), delay)
        self.stop.wait(delay)  # a stop ends the wait at once
        return True

    def _push_splitting(self, batch: list[PushItem]) -> dict[str, int]:
        """Push; on a 4xx split the batch to isolate and fail the refused files."""
        try:
            return self.sink.push(batch)
        except LabelStudioError as error:
            if len(batch) == 1:
                item = batch[0]
                self.state.fail(item.rel_path, "push", error.message, item.sha256)
                return {}
            middle = len(batch) // 2
            done = self._push_splitting(batch[:middle])
            done.update(self._push_splitting(batch[middle:]))
            return done

    def _pushed(self, rel: str, task_id: int, *, reconciled: bool = False) -> None:
        self.journal.mark_pushed(rel, task_id, None, self.model_version)
        if reconciled:
            log.info("%s: found in Label Studio as task %s (reconciled)", rel, task_id)
        self.state.finished(rel, pushed=1)
