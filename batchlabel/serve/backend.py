"""The prediction service behind ``/predict``: interactive smart-tool answers and batch pre-annotations.

Interactive: the smart tool's manual regions -> one prompt (:mod:`batchlabel.annotate.context`) -> the task image's
embedding (:mod:`batchlabel.serve.embedding_lookup`, encode once on a miss) -> the decoder -> Label Studio result
items in the project's own tool names (brush always; polygon / rectangle when ``preannotate.outputs`` asks for
them), score = predicted IoU. With ``serve.multimask`` the three candidates come back as three regions, best first.

Batch: each task -> its embedding -> :func:`batchlabel.annotate.preannotate.preannotate`, the same code as
``batchlabel run``. A task whose image cannot be used, or with nothing found, gets an empty list (no prediction), so
one bad image never fails the batch; the reason is logged.

No mutable state is shared between requests except thread-safe caches of immutable values.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from batchlabel.annotate.context import ContextError, InteractivePrompt, parse_context
from batchlabel.config import Config
from batchlabel.infer.decoder import Prompt, decode_threads
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.serve.embedding_lookup import EmbeddingProvider
from batchlabel.serve.protocol import Prediction, PredictRequest, PredictResponse, Task
from batchlabel.serve.request_counts import InteractiveRequestCounts
from batchlabel.serve.sources import ImageSourceError, resolve_image_url
from batchlabel.serve.threads import CoreBudget, cpu_cores, torch_threads
from batchlabel.sync.label_config import ControlNames, load_label_config, parse_control_names
from batchlabel.sync.results import ResultFormatError, object_results

log = logging.getLogger(__name__)


class PredictError(Exception):
    """A request that cannot be answered as asked. ``status_code`` is 4xx; ``message`` says what to fix."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class ProjectSchema:
    """What the backend needs from a labeling config: tool names, ordered labels, the task data key of the image."""

    names: ControlNames
    labels: tuple[str, ...]
    image_key: str


@lru_cache(maxsize=64)
def project_schema(label_config: str) -> ProjectSchema:
    """Parse a labeling config once (cached by its text). Raises :class:`PredictError` (422) on invalid XML."""
    try:
        names, labels = parse_control_names(label_config)
    except ET.ParseError as exc:
        raise PredictError(422, f"label_config is not valid XML: {exc}") from None
    return ProjectSchema(names=names, labels=tuple(labels), image_key=names.image_key)


def interactive_outputs(configured: tuple[str, ...], names: ControlNames) -> tuple[str, ...]:
    """Brush always (the smart tools' answer), then polygon / rectangle when configured and the project has the
    tool, in a stable order."""
    present = {"polygon": names.polygon, "rectangle": names.rectangle}
    return ("brush", *(kind for kind in ("polygon", "rectangle") if kind in configured and present[kind]))


class Backend:
    """Answers ``/predict`` for one loaded model.

    Args:
        config: the validated config (storage root, Label Studio URL, outputs, serve options).
        decoder: a pure, thread-safe decoder (``MaskDecoder.from_model(model)``).
        provider: embedding lookup / encode-on-miss.
        model_version: the version reported to Label Studio and put on every prediction (same as ``run``'s).
        max_concurrent_decodes: cores shared out among decodes (default: all cores; a decode alone uses them all,
            concurrent decodes split them, one thread each at least: :class:`batchlabel.serve.threads.CoreBudget`).
        batch_threads: torch threads for batch pre-annotation (default: all cores).
        request_counts: where answered interactive requests are counted per task and label (``batchlabel report``).
    """

    def __init__(
        self,
        config: Config,
        *,
        decoder: Any,
        provider: EmbeddingProvider,
        model_version: str,
        max_concurrent_decodes: int | None = None,
        batch_threads: int | None = None,
        request_counts: InteractiveRequestCounts | None = None,
    ) -> None:
        self.config = config
        self.decoder = decoder
        self.provider = provider
        self.model_version = model_version
        self._cores = CoreBudget(max_concurrent_decodes or cpu_cores())
        self._batch_threads = batch_threads or cpu_cores()
        self._default_xml: str | None = None
        self.request_counts = request_counts

    # -- helpers -------------------------------------------------------------------------------------------------
    def schema_for(self, label_config: str | None) -> ProjectSchema:
        """The request's labeling config, or the configured one when Label Studio sent none."""
        if label_config is None or not label_config.strip():
            if self._default_xml is None:
                labels = self.config.label_studio
                self._default_xml = load_label_config(labels.labels, labels.label_config)
            label_config = self._default_xml
        return project_schema(label_config)

    def _source(self, task: Task, schema: ProjectSchema) -> Any:
        url = task.data.get(schema.image_key)
        if url is None:
            raise ImageSourceError(
                422, f"task {task.id}: data has no {schema.image_key!r} key (the labeling config's Image value)"
            )
        return resolve_image_url(
            url,
            root=self.config.storage.root,
            label_studio_url=self.config.label_studio.url,
            allow_remote_urls=self.config.serve.allow_remote_urls,
        )

    def _decode(self, embedding: ImageEmbedding, prompt: Prompt, *, multimask: bool) -> Any:
        with self._cores.take() as threads, torch_threads(threads), decode_threads(threads):
            try:
                return self.decoder.decode(embedding, prompt, multimask=multimask)
            except ValueError as exc:  # the decoder's contract for prompts the model cannot take
                raise PredictError(422, str(exc)) from None

    def _label(self, prompt: InteractivePrompt, schema: ProjectSchema) -> str:
        if prompt.label is not None:
            if schema.labels and prompt.label not in schema.labels:
                raise PredictError(422, f"the smart tool's label {str(prompt.label)[:100]!r} is not one of the "
                                        f"labeling config's labels {list(schema.labels)[:20]}")
            return prompt.label
        if self.config.preannotate.default_label is not None:
            return self.config.preannotate.default_label
        if schema.labels:
            return schema.labels[0]
        raise PredictError(422, "the smart tool's region carries no label and the labeling config has none")

    # -- interactive ---------------------------------------------------------------------------------------------
    def interactive(self, request: PredictRequest) -> PredictResponse:
        """One smart-tool context on the first task -> one prediction with the object's mask (or candidates)."""
        start = time.perf_counter()
        schema = self.schema_for(request.label_config)
        if schema.names.brush is None:
            raise PredictError(422, "the labeling config has no BrushLabels tool to put the mask in")
        task = request.tasks[0]
        context = request.params.context
        try:
            parsed = parse_context(context.result if context is not None else [])
        except ContextError as exc:
            raise PredictError(422, str(exc)) from None
        label = self._label(parsed, schema)  # refused before any encode or decode
        source = self._source(task, schema)
        lookup = self.provider.get(source)
        embedding = lookup.embedding
        decode_start = time.perf_counter()
        multimask = self.config.serve.multimask
        decoded = self._decode(embedding, parsed.to_prompt(embedding.original_size), multimask=multimask)
        decode_ms = (time.perf_counter() - decode_start) * 1000.0
        outputs = interactive_outputs(self.config.preannotate.outputs, schema.names)
        result: list[dict[str, Any]] = []
        scores = np.asarray(decoded.scores, dtype=np.float64)
        format_start = time.perf_counter()
        try:
            for mask, score in zip(decoded.masks, scores, strict=True):
                result.extend(
                    object_results(
                        mask, label=label, outputs=outputs, names=schema.names, score=float(score),
                        polygon_tolerance_px=self.config.preannotate.polygon_tolerance_px,
                    )
                )
        except (ResultFormatError, ValueError) as exc:
            raise PredictError(422, str(exc)) from None
        format_ms = (time.perf_counter() - format_start) * 1000.0
        best = float(scores.max()) if scores.size else 0.0
        if self.request_counts is not None and task.id is not None:
            self.request_counts.record(request.project, task.id, label)
        log.info(
            "interactive task=%s prompt=%s points=%d label=%r embedding=%s lookup_ms=%.1f decode_ms=%.1f "
            "format_ms=%.1f total_ms=%.1f score=%.3f candidates=%d",
            task.id, parsed.kind, 0 if parsed.points is None else len(parsed.points), label, lookup.origin,
            lookup.lookup_ms, decode_ms, format_ms, (time.perf_counter() - start) * 1000.0, best, len(scores),
        )
        return PredictResponse(results=[Prediction(result=result, score=best, model_version=self.model_version)])

    # -- batch ---------------------------------------------------------------------------------------------------
    def batch(self, request: PredictRequest) -> PredictResponse:
        """Pre-annotate every task with ``run``'s code; one entry per task, in order (empty list: no prediction)."""
        from batchlabel.annotate.preannotate import preannotate

        start = time.perf_counter()
        schema = self.schema_for(request.label_config)
        results: list[Prediction | list[Prediction]] = []
        counts = {"predicted": 0, "empty": 0, "failed": 0, "encoded": 0}
        for task in request.tasks:
            try:
                lookup = self.provider.get(self._source(task, schema))
            except ImageSourceError as exc:
                log.warning("batch task=%s skipped: %s", task.id, exc.message)
                counts["failed"] += 1
                results.append([])
                continue
            counts["encoded"] += lookup.origin == "encoded"
            try:
                with (
                    self._cores.take(self._batch_threads) as threads, torch_threads(threads), decode_threads(threads)
                ):
                    prediction = preannotate(self.config, self.decoder, lookup.embedding, task.model_dump(),
                                             model_version=self.model_version)
            except ValueError as exc:  # preannotate's contract: prompts it cannot read or the model cannot take
                log.warning("batch task=%s not pre-annotated: %s", task.id, exc)
                counts["failed"] += 1
                results.append([])
                continue
            if not prediction or not prediction.get("result"):
                counts["empty"] += 1
                results.append([])
                continue
            counts["predicted"] += 1
            results.append(
                Prediction(
                    result=list(prediction["result"]),
                    score=float(prediction.get("score") or 0.0),
                    model_version=str(prediction.get("model_version") or self.model_version),
                )
            )
        log.info(
            "batch tasks=%d predicted=%d empty=%d failed=%d encoded=%d total_ms=%.0f",
            len(request.tasks), counts["predicted"], counts["empty"], counts["failed"], counts["encoded"],
            (time.perf_counter() - start) * 1000.0,
        )
        return PredictResponse(results=results)
