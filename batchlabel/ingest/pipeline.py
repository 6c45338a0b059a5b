"""The ingestion pipeline: stable files -> hash + journal -> encode in batches -> pre-annotate -> push in bulk.

Threads and bounded queues (memory stays flat however many files arrive)::

    caller (discovery) --submit()--> [Intake] --encode_q--> [EncodeStage] --push_q--> [PushStage]

- :mod:`~batchlabel.ingest.intake` (the caller's thread): each file read and hashed once, journaled, deduplicated;
  its bytes travel to the encoder, so ``encode_q`` holds at most ``queue_size`` files' bytes. ``submit`` blocks
  while ``encode_q`` is full (back-pressure on discovery).
- :mod:`~batchlabel.ingest.encode_stage` (thread ``batchlabel-encode``): batching happens once, here: up to
  ``model.batch_size`` files, waiting at most ``model.max_wait_ms`` for company; encode, then pre-annotate each.
- :mod:`~batchlabel.ingest.push_stage` (thread ``batchlabel-push``): bulk pushes of up to the sink's chunk size,
  waiting at most ``push_max_wait_s``; back-off while Label Studio is down, reconcile after an unknown outcome,
  split on a refusal.
- Every stage transition is committed to the journal before the next side effect, so a restart resumes without
  duplicates. :mod:`~batchlabel.ingest.run_state` holds what is in flight and the counters.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from batchlabel.ingest.batching import DONE, next_batch, put
from batchlabel.ingest.encode_stage import EncodeStage
from batchlabel.ingest.intake import Intake
from batchlabel.ingest.push_stage import PushStage
from batchlabel.ingest.run_state import Counters, RunState

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.ingest.discovery import StableFile
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.ray_encode import PredictionSpool
    from batchlabel.ingest.sink import LabelStudioSink

log = logging.getLogger(__name__)


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
        queue_size: bound of each queue (files).
        push_max_wait_s: how long the first file of a push batch waits for company.
        unavailable_limit_s: give up pushing after Label Studio was unreachable this long (None: never).
        on_progress: called with each finished file's rel_path (progress bars).
        cluster_predictions: ``run --ray``'s predictions made by the actors; a file's is used instead of decoding
            here when it was made for the same sha256 and model version.
        keep_older_predictions: keep batchlabel's predictions of other model versions (``train``'s re-predict).
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
        on_progress: Callable[[str], None] | None = None,
        cluster_predictions: PredictionSpool | None = None,
        keep_older_predictions: bool = False,
    ) -> None:
        self.stop = stop or threading.Event()
        self.state = RunState(journal, on_progress)
        self.intake = Intake(config, journal, sink, self.state)
        self.encode_stage = EncodeStage(config, journal, encoder, decoder, model_version=model_version,
                                        state=self.state, cluster_predictions=cluster_predictions,
                                        keep_older_predictions=keep_older_predictions)
        self.push_stage = PushStage(config, journal, sink, self.state, model_version=model_version, stop=self.stop,
                                    unavailable_limit_s=unavailable_limit_s)
        self.batch_size = max(1, int(config.model.batch_size))
        self.encode_wait_s = config.model.max_wait_ms / 1000.0
        self.push_chunk = sink.chunk_size
        self.push_max_wait_s = push_max_wait_s
        self._encode_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._push_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._threads = [
            threading.Thread(target=self._encode_loop, name="batchlabel-encode", daemon=True),
            threading.Thread(target=self._push_loop, name="batchlabel-push", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def counters(self) -> Counters:
        return self.state.counters

    @property
    def not_pushed(self) -> list[str]:
        """Files given up on while Label Studio was unavailable (journaled as predicted; pushed by the next run)."""
        return self.state.not_pushed

    def submit(self, stable: StableFile) -> None:
        """Read and hash a stable file, journal it and queue the work it needs (blocks while the pipeline is full)."""
        item = self.intake.admit(stable)
        if item is not None:
            put(self._encode_q, item, self.stop)

    def close(self, timeout_s: float | None = None) -> None:
        """No more files: drain the queues (or, after ``stop``, just the batch in flight) and join the threads."""
        put(self._encode_q, DONE, self.stop)
        for thread in self._threads:
            thread.join(timeout_s)

    def _encode_loop(self) -> None:
        done = False
        while not done:
            batch, done = next_batch(self._encode_q, self.batch_size, self.encode_wait_s)
            if batch and not self.stop.is_set():  # on stop, queued files stay journaled for the next start
                try:
                    for push in self.encode_stage.process(batch):
                        put(self._push_q, push, self.stop)
                except Exception as error:  # keep the daemon alive: journal the batch as failed, go on
                    log.exception("encode batch failed")
                    for item in batch:
                        self.state.fail(item.rel_path, "encode", f"{type(error).__name__}: {error}", item.sha256)
            elif batch:
                self.state.release(item.rel_path for item in batch)
        put(self._push_q, DONE, self.stop)

    def _push_loop(self) -> None:
        done = False
        while not done:
            batch, done = next_batch(self._push_q, self.push_chunk, self.push_max_wait_s)
            if batch:
                self.push_stage.push(batch)
