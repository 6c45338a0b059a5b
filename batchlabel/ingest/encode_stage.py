"""Stage 2 of the pipeline: encode a batch of files (one batching wait: the pipeline's), then pre-annotate each.

The encoder decodes the bytes the intake read (``encode_files(..., gathered=True)`` adds no second wait). A file
that fails to encode is journaled as failed (unless it was deleted meanwhile: then it is dropped); a file whose task
already has this run's prediction is journaled as pushed without a new prediction. Under ``run --ray`` the cluster's
prediction for the same sha256 and model version is used instead of decoding here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from batchlabel.ingest.sink import PushItem, predictions_of, stale_predictions_of
from batchlabel.sync.client import image_url

if TYPE_CHECKING:
    from batchlabel.config import Config
    from batchlabel.infer.embedding import ImageEmbedding
    from batchlabel.ingest.intake import WorkItem
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.ray_encode import PredictionSpool
    from batchlabel.ingest.run_state import RunState

log = logging.getLogger(__name__)


class EncodeStage:
    """Encodes :class:`WorkItem` batches and turns each embedding into a :class:`PushItem`.

    Args:
        config: the validated config (pre-annotation settings).
        journal: the ingestion journal.
        encoder: a ``BatchEncoder`` (``encode_files(sources, gathered=True)``, ``model_id``).
        decoder: a ``MaskDecoder`` for the encoder's model (unused in mode ``none``).
        model_version: this run's prediction version.
        state: the run's shared state.
        cluster_predictions: ``run --ray``'s predictions made by the actors, or None.
        keep_older_predictions: leave batchlabel's predictions of other model versions on the task (``train``'s
            re-predict keeps the older model's; a plain run replaces them).
    """

    def __init__(self, config: Config, journal: Journal, encoder: Any, decoder: Any, *, model_version: str,
                 state: RunState, cluster_predictions: PredictionSpool | None = None,
                 keep_older_predictions: bool = False) -> None:
        self.config = config
        self.journal = journal
        self.encoder = encoder
        self.decoder = decoder
        self.model_version = model_version
        self.state = state
        self.cluster_predictions = cluster_predictions
        self.keep_older_predictions = keep_older_predictions

    def process(self, batch: list[WorkItem]) -> Iterator[PushItem]:
        """Encode ``batch`` and yield a push for each file that needs one, as soon as it is predicted."""
        by_path = {str(item.path): item for item in batch}
        for result in self.encoder.encode_files([item.source for item in batch], gathered=True):
            item = by_path.get(str(result.path))
            if item is None:
                continue
            if result.error is not None or result.embedding is None:
                if item.path.exists():
                    self.state.fail(item.rel_path, "encode", result.error or "no embedding", item.sha256)
                else:
                    self.state.vanished(item.rel_path)
                continue
            self.journal.mark_encoded(item.rel_path, item.sha256, self.encoder.model_id)
            self.state.count(encoded=1, cached=int(bool(result.cached)))
            if item.complete:
                assert item.task is not None
                self.journal.mark_pushed(item.rel_path, int(item.task["id"]),
                                         next(iter(predictions_of(item.task, self.model_version)), None),
                                         self.model_version)
                self.state.finished(item.rel_path, already_in_label_studio=1)
                continue
            push = self._predict(item, result.embedding)
            if push is not None:
                yield push

    def _predict(self, item: WorkItem, embedding: ImageEmbedding) -> PushItem | None:
        from batchlabel.annotate.preannotate import PromptSourceError, preannotate

        made = self.cluster_predictions.get(item.rel_path) if self.cluster_predictions is not None else None
        if made is not None and (made.sha256, made.model_version) == (item.sha256, self.model_version):
            if made.error is not None:
                self.state.fail(item.rel_path, "predict", made.error, item.sha256)
                return None
            prediction = made.prediction
            self.state.count(predicted_on_cluster=int(prediction is not None))
        else:
            task = {"data": {"image": image_url(item.rel_path)}, **(item.task or {})}  # the image's path for detect
            try:
                prediction = preannotate(self.config, self.decoder, embedding, task, model_version=self.model_version)
            except (PromptSourceError, ValueError) as error:
                self.state.fail(item.rel_path, "predict", str(error), item.sha256)
                return None
        self.journal.mark_predicted(item.rel_path, self.model_version)
        self.state.count(predicted=int(prediction is not None))
        push = PushItem(item.rel_path, item.sha256, prediction)
        if item.task is not None:
            push.task_id = int(item.task["id"])
            push.new_version = (item.task.get("meta") or {}).get("sha256") != item.sha256
            if not self.keep_older_predictions:
                push.replace_prediction_ids = stale_predictions_of(item.task, self.model_version)
            if push.new_version:
                push.replace_prediction_ids += predictions_of(item.task, self.model_version)
        return push
