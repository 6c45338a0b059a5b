"""From exported tasks to the report: which prediction each reviewed task is compared with, per-label counts,
``mean_iou``, annotation times, interactive requests per object, and the time-saved estimate.

Definitions (issue 16):

- A task is **reviewed** when it has the annotation the dataset build would use
  (:func:`batchlabel.dataset.ls_export.select_annotation`: ground truth first, else the latest, never a cancelled
  one). Its objects are the build's objects (:class:`batchlabel.dataset.convert.TaskConverter`: a brush and its
  companion rectangle are one object, box-only objects stay boxes), and so are a prediction's.
- The prediction a reviewed task is compared with (the top-level ``labels``) is the one the annotation started from
  (``parent_prediction``) when the task has it, else the task's latest prediction. Under ``model_versions`` each
  version is compared on its own: a task's latest prediction of that version against the same annotation.
- ``predicted``: objects of the label in the compared predictions of all tasks; ``reviewed``: those in reviewed tasks.
  ``accepted``/``edited``/``relabeled``/``deleted`` count reviewed predicted objects by their predicted label;
  ``added`` counts final objects no prediction matched, by their own label (:mod:`batchlabel.report.matching`).
- ``mean_iou``: mean IoU of the label's reviewed predicted objects with their matched final object, 0 when deleted.
- ``median_lead_time_s`` of a label: the median, over reviewed tasks with final objects of that label, of the
  annotation's ``lead_time`` divided by its number of final objects (seconds per object).
- ``requests_per_object``: the interactive requests ``batchlabel serve`` answered for the label on reviewed tasks,
  divided by the label's final objects in those tasks (None when serve has recorded nothing for the project).
- Per model version, ``median_lead_time_s``, ``requests_per_object`` and ``final_objects`` count the reviewed tasks
  whose compared prediction (the one above: the annotation started from it) is of that version: the time and the
  clicks belong to the annotation, and the annotation to the prediction it started from.
- The time-saved estimate: ``report.manual_s_per_object`` (a stated baseline, not a measurement) times the final
  objects of reviewed tasks with a ``lead_time``, minus those tasks' summed ``lead_time``.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from batchlabel.dataset.convert import TaskConverter
from batchlabel.dataset.ls_export import DatasetError, select_annotation, timestamp
from batchlabel.report.matching import RegionObject, TaskMatch, match_task
from batchlabel.report.source import prediction_id, task_predictions

log = logging.getLogger(__name__)

OUTCOMES = ("accepted", "edited", "relabeled", "deleted")
#: The IoU histogram's bin edges (matched and deleted predicted objects of reviewed tasks).
IOU_BIN_EDGES = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass
class LabelTally:
    """Running counts of one label in one scope (all versions, or one model version)."""

    predicted: int = 0
    reviewed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    added: int = 0
    ious: list[float] = field(default_factory=list)
    seconds_per_object: list[float] = field(default_factory=list)
    final_objects: int = 0
    requests: int = 0

    def to_json(self, *, requests_known: bool) -> dict[str, Any]:
        return {
            "predicted": self.predicted,
            "reviewed": self.reviewed,
            **{outcome: self.outcomes[outcome] for outcome in OUTCOMES},
            "added": self.added,
            "mean_iou": round(float(np.mean(self.ious)), 4) if self.ious else None,
            "median_lead_time_s": round(statistics.median(self.seconds_per_object), 2)
            if self.seconds_per_object else None,
            "requests_per_object": round(self.requests / self.final_objects, 3)
            if requests_known and self.final_objects else None,
            "final_objects": self.final_objects,
        }


@dataclass
class Scope:
    """The tallies of one scope: per label, the reviewed tasks, and every reviewed predicted object's IoU."""

    labels: dict[str, LabelTally] = field(default_factory=lambda: defaultdict(LabelTally))
    tasks: int = 0
    reviewed_tasks: int = 0
    ious: list[float] = field(default_factory=list)

    def add_predicted(self, objects: Sequence[RegionObject], *, reviewed: bool) -> None:
        self.tasks += 1
        self.reviewed_tasks += int(reviewed)
        for obj in objects:
            tally = self.labels[obj.label]
            tally.predicted += 1
            tally.reviewed += int(reviewed)

    def add_match(self, match: TaskMatch) -> None:
        for outcome in match.predictions:
            tally = self.labels[outcome.label]
            tally.outcomes[outcome.outcome] += 1
            tally.ious.append(outcome.iou)
            self.ious.append(outcome.iou)
        for label in match.added:
            self.labels[label].added += 1

    def to_json(self, *, requests_known: bool) -> dict[str, Any]:
        """Counts, times and requests per label (:meth:`LabelTally.to_json`), the tasks, the IoU histogram."""
        counts, _ = np.histogram(self.ious, bins=IOU_BIN_EDGES)
        return {
            "tasks": {"with_predictions": self.tasks, "reviewed": self.reviewed_tasks},
            "labels": {label: tally.to_json(requests_known=requests_known)
                       for label, tally in sorted(self.labels.items())},
            "iou_histogram": {"bin_edges": list(IOU_BIN_EDGES), "counts": [int(c) for c in counts]},
        }


@dataclass(frozen=True)
class UnreviewedTask:
    """An unreviewed task with a prediction: ``score`` is its least certain object's score (lower = review first)."""

    task_id: int
    score: float
    model_version: str | None
    objects: int


@dataclass
class ReportData:
    """Everything the report shows, gathered in one pass over the tasks."""

    total_tasks: int = 0
    reviewed_tasks: int = 0
    predictions_ids_only: int = 0
    overall: Scope = field(default_factory=Scope)
    versions: dict[str, Scope] = field(default_factory=lambda: defaultdict(Scope))
    lead_times_s: list[float] = field(default_factory=list)
    seconds_per_object: list[float] = field(default_factory=list)
    timed_objects: int = 0
    unreviewed: list[UnreviewedTask] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests_known: bool = False


def _recency(prediction: Mapping[str, Any]) -> tuple[float, int]:
    """Creation time as the dataset build reads times (:func:`batchlabel.dataset.ls_export.timestamp`), then id."""
    identifier = prediction.get("id")
    return (timestamp(prediction, "created_at"), identifier if isinstance(identifier, int) else -1)


def prediction_score(prediction: Mapping[str, Any]) -> float | None:
    """The least certain object's score: the minimum ``score`` of the result items, else the prediction's ``score``.

    (batchlabel writes the minimum as the prediction's score, so Label Studio's Data Manager ordering by prediction
    score agrees; other tools' predictions may carry a mean, hence the items first.)
    """
    item_scores = [float(item["score"]) for item in prediction.get("result") or []
                   if isinstance(item, Mapping) and isinstance(item.get("score"), (int, float))
                   and not isinstance(item.get("score"), bool)]
    if item_scores:
        return min(item_scores)
    score = prediction.get("score")
    return float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None


def _objects(converter: TaskConverter, labels: Sequence[str], task: dict[str, Any], result: Any,
             what: str) -> list[RegionObject]:
    converted = converter.convert(task, {"id": what, "result": result})
    return [
        RegionObject(labels[obj.category_id - 1], obj.segmentation if obj.kind != "box" else None,
                     (obj.bbox[0], obj.bbox[1], obj.bbox[2], obj.bbox[3]))
        for obj in converted.objects
    ]


def _lead_time(annotation: Mapping[str, Any]) -> float | None:
    value = annotation.get("lead_time")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        return None
    return float(value)


class ReportCollector:
    """Adds tasks (JSON export form) one by one into a :class:`ReportData`.

    Args:
        converter: the dataset build's converter (segmentation ``"rle"``) for this project's labels and root.
        labels: category names in label-config order (``converter``'s categories).
        requests: interactive requests per ``(task id, label)`` recorded by ``serve``, or None when none are known.
    """

    def __init__(self, converter: TaskConverter, labels: Sequence[str],
                 requests: Mapping[tuple[int, str], int] | None = None) -> None:
        self.converter = converter
        self.labels = list(labels)
        self.requests = requests or {}
        self.data = ReportData(requests_known=requests is not None)

    def add_tasks(self, tasks: Iterable[dict[str, Any]]) -> ReportData:
        for task in tasks:
            self.add(task)
        return self.data

    def add(self, task: dict[str, Any]) -> None:
        data = self.data
        data.total_tasks += 1
        try:
            annotation = select_annotation(task)
            if annotation is not None:
                data.reviewed_tasks += 1
            self._add(task, annotation)
        except DatasetError as error:
            data.failures.append(str(error))
            log.error("%s", error)

    def _add(self, task: dict[str, Any], annotation: dict[str, Any] | None) -> None:
        """Convert every side of the task first, then tally: a malformed part fails the task (a failure naming it)
        before any of its objects, times or predictions is counted."""
        data = self.data
        predictions, ids_only = task_predictions(task)
        task_id = int(task["id"]) if isinstance(task.get("id"), int) else -1
        final: list[RegionObject] = []
        if annotation is not None:
            final = _objects(self.converter, self.labels, task, annotation.get("result") or [],
                             f"{annotation.get('id')}")
        if not predictions:
            data.predictions_ids_only += ids_only
            if annotation is not None:  # drawn from scratch: every object is added
                self._add_times(task_id, annotation, final, (data.overall,))
                data.overall.add_match(TaskMatch((), tuple(obj.label for obj in final)))
            return
        primary = _compared_prediction(task, annotation, predictions)
        latest_by_version: dict[str, dict[str, Any]] = {}
        for prediction in sorted(predictions, key=_recency):
            latest_by_version[str(prediction.get("model_version") or "")] = prediction
        compared = {version: _objects(self.converter, self.labels, task, prediction["result"],
                                      f"prediction {prediction.get('id')}")
                    for version, prediction in latest_by_version.items()}
        primary_version = str(primary.get("model_version") or "")
        primary_objects = (compared[primary_version] if latest_by_version[primary_version] is primary
                           else _objects(self.converter, self.labels, task, primary["result"],
                                         f"prediction {primary.get('id')}"))
        data.predictions_ids_only += ids_only
        for version, objects in compared.items():
            scope = data.versions[version]
            scope.add_predicted(objects, reviewed=annotation is not None)
            if annotation is not None:
                scope.add_match(match_task(objects, final))
        data.overall.add_predicted(primary_objects, reviewed=annotation is not None)
        if annotation is not None:
            self._add_times(task_id, annotation, final, (data.overall, data.versions[primary_version]))
            data.overall.add_match(match_task(primary_objects, final))
            return
        score = prediction_score(primary)
        if score is not None and primary_objects:
            data.unreviewed.append(UnreviewedTask(task_id, score, primary.get("model_version"),
                                                  len(primary_objects)))

    def _add_times(self, task_id: int, annotation: Mapping[str, Any], final: Sequence[RegionObject],
                   scopes: Sequence[Scope]) -> None:
        """The annotation's final objects, requests and lead time: overall (the first scope) and in the version
        scope of the prediction it started from."""
        data = self.data
        per_label = Counter(obj.label for obj in final)
        lead_time = _lead_time(annotation)
        if lead_time is not None:
            data.lead_times_s.append(lead_time)
            if final:
                data.seconds_per_object.append(lead_time / len(final))
                data.timed_objects += len(final)
        for scope in scopes:
            for label, count in per_label.items():
                tally = scope.labels[label]
                tally.final_objects += count
                tally.requests += self.requests.get((task_id, label), 0)
                if lead_time is not None:
                    tally.seconds_per_object.append(lead_time / len(final))


def _compared_prediction(task: Mapping[str, Any], annotation: Mapping[str, Any] | None,
                         predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The prediction a task is compared with: the annotation's ``parent_prediction`` when the task has it, else the
    latest. Raises :class:`~batchlabel.dataset.ls_export.ExportFormatError` when ``parent_prediction`` is a list or
    an object."""
    if annotation is not None:
        parent = prediction_id(annotation.get("parent_prediction"),
                               f"task {task.get('id')}: annotation {annotation.get('id')}: parent_prediction")
        if parent is not None:
            for prediction in predictions:
                if prediction.get("id") == parent:
                    return prediction
    return max(predictions, key=_recency)


def report_json(data: ReportData, *, manual_s_per_object: float, baseline_source: str,
                source: Mapping[str, Any], uncertain: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The report as JSON (keys of issue 16 plus ``time``, ``time_saved_estimate``, ``iou_histogram``...)."""
    overall = data.overall.to_json(requests_known=data.requests_known)
    measured_s = float(sum(data.lead_times_s))
    timed_objects = data.timed_objects
    manual_s = manual_s_per_object * timed_objects
    report: dict[str, Any] = {
        "source": dict(source),
        "tasks": {
            "total": data.total_tasks,
            "reviewed": data.reviewed_tasks,
            "unreviewed": data.total_tasks - data.reviewed_tasks,
            "with_predictions": overall["tasks"]["with_predictions"],
            "predictions_ids_only": data.predictions_ids_only,
        },
        "model_versions": {
            version: scope.to_json(requests_known=data.requests_known)
            for version, scope in sorted(data.versions.items())
        },
        "labels": overall["labels"],
        "iou_histogram": overall["iou_histogram"],
        "time": {
            "annotations_with_lead_time": len(data.lead_times_s),
            "median_lead_time_s_per_task": round(statistics.median(data.lead_times_s), 2)
            if data.lead_times_s else None,
            "median_lead_time_s_per_object": round(statistics.median(data.seconds_per_object), 2)
            if data.seconds_per_object else None,
            "total_lead_time_s": round(measured_s, 2),
        },
        "time_saved_estimate": {
            "is_estimate": True,
            "baseline_s_per_object": manual_s_per_object,
            "baseline_source": baseline_source,
            "objects": timed_objects,
            "manual_s": round(manual_s, 1),
            "measured_s": round(measured_s, 1),
            "saved_s": round(manual_s - measured_s, 1),
            "saved_fraction": round((manual_s - measured_s) / manual_s, 3) if manual_s > 0 else None,
            "note": "an estimate: the stated manual baseline per object times the reviewed objects, minus the "
                    "measured Label Studio lead_time of those annotations",
        },
        "failures": list(data.failures),
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if uncertain is not None:
        report["uncertain"] = list(uncertain)
    return report
