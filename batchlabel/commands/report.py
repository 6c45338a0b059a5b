"""``batchlabel report``: argument handling, the one pass over the tasks, the summary printed on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchlabel.config import Config

if TYPE_CHECKING:
    from batchlabel.report.diverse import UnreviewedImage

log = logging.getLogger(__name__)


#: How many tasks ``--diverse-tab`` ranks when ``--diverse`` does not say.
DIVERSE_TAB_DEFAULT_COUNT = 50


def build_report(config: Config, *, from_export: Path | None = None, uncertain: int | None = None,
                 uncertain_tab: bool = False, diverse: int | None = None, diverse_tab: bool = False,
                 client: Any | None = None) -> dict[str, Any]:
    """The report's JSON for the config's live project (or ``from_export``); see :mod:`batchlabel.report.metrics`.

    ``uncertain``: also list that many least certain unreviewed tasks. ``uncertain_tab``: also create (or update)
    the Data Manager tab "uncertain first" (live project only). ``diverse``: also list that many unreviewed tasks in
    k-center order over their cached embeddings (:mod:`batchlabel.report.diverse`); ``diverse_tab``: also rank them
    (``diverse`` or :data:`DIVERSE_TAB_DEFAULT_COUNT` tasks) in the Data Manager tab "diverse first" (live project
    only). Raises :class:`~batchlabel.dataset.ls_export.DatasetError` when the source cannot be read at all.
    """
    from batchlabel.dataset.builder import labels_of
    from batchlabel.dataset.convert import TaskConverter
    from batchlabel.dataset.ls_export import DatasetError, image_data_key, iter_export_tasks
    from batchlabel.report.diverse import collect_unreviewed
    from batchlabel.report.learning import add_learning_curve, trained_model_counts
    from batchlabel.report.metrics import ReportCollector, report_json
    from batchlabel.report.routing import ensure_diverse_tab, ensure_uncertain_tab, least_certain, write_diverse_ranks
    from batchlabel.report.source import report_source
    from batchlabel.serve.request_counts import InteractiveRequestCounts

    if uncertain_tab and from_export is not None:  # refused before the export and the pass over the tasks
        raise DatasetError("--uncertain-tab needs the live project (not --from-export)")
    if diverse_tab and from_export is not None:
        raise DatasetError("--diverse-tab needs the live project (not --from-export)")
    if diverse_tab and diverse is None:
        diverse = DIVERSE_TAB_DEFAULT_COUNT
    unreviewed_images: list[UnreviewedImage] = []
    if from_export is None and client is None:
        from batchlabel.sync.client import connect

        client = connect(config.label_studio)
    config.cache.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.cache.dir, prefix="report-") as work:
        source = report_source(config, from_export=from_export, dest_dir=Path(work), client=client)
        labels = labels_of(source)
        project_id = source.project_id
        if project_id is None:  # an export file: its tasks name their project
            first = next(iter_export_tasks(source.path), None)
            project_id = first.get("project") if isinstance(first, dict) else None
        counts = InteractiveRequestCounts(config.cache.dir)
        try:
            requests = counts.for_project(project_id)
        finally:
            counts.close()
        image_key = image_data_key(source.label_config)
        converter = TaskConverter(labels, config.storage.root, image_key=image_key,
                                  polygon_tolerance_px=config.preannotate.polygon_tolerance_px)
        tasks = iter_export_tasks(source.path)
        if diverse is not None:
            tasks = collect_unreviewed(tasks, image_key, unreviewed_images)
        data = ReportCollector(converter, labels, requests).add_tasks(tasks)
    url = source.url or config.label_studio.url
    listed = None
    if uncertain is not None:
        listed = least_certain(data.unreviewed, uncertain, label_studio_url=url,
                               project_id=project_id if isinstance(project_id, int) else None)
    described = {"kind": source.kind, "path": str(source.path) if source.kind == "export" else None,
                 "project_id": project_id, "project_title": source.project_title, "url": url,
                 "exported_at": source.exported_at}
    report = report_json(data, manual_s_per_object=config.report.manual_s_per_object,
                         baseline_source=config.report.baseline_source, source=described, uncertain=listed)
    add_learning_curve(report, trained_model_counts(config.models_dir, config.label_studio.project))
    if diverse is not None:
        report["diverse"] = _diverse(config, unreviewed_images, diverse, label_studio_url=url,
                                     project_id=project_id if isinstance(project_id, int) else None)
    if uncertain_tab and source.project_id is not None:
        report["uncertain_tab_id"] = ensure_uncertain_tab(client, source.project_id)
    if diverse_tab and source.project_id is not None:
        ranks = {task["task_id"]: task["rank"] for task in report["diverse"]["tasks"]}
        report["diverse"]["ranked_tasks_changed"] = write_diverse_ranks(
            client, [(image.task_id, image.data) for image in unreviewed_images], ranks)
        report["diverse_tab_id"] = ensure_diverse_tab(client, source.project_id)
    return report


def _diverse(config: Config, images: list[UnreviewedImage], count: int, *, label_studio_url: str | None,
             project_id: int | None) -> dict[str, Any]:
    """The ``diverse`` section over the store of ``cache.embeddings_dir`` (read only: nothing is encoded)."""
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.report.diverse import ImageHashes, diverse_first

    hashes = ImageHashes(config.storage.root, config.journal_path)
    try:
        store = EmbeddingStore(config.cache.embeddings_dir, max_bytes=config.cache.max_bytes)
        return diverse_first(images, count, store=store, hashes=hashes, preferred_model=config.model.name,
                             label_studio_url=label_studio_url, project_id=project_id)
    finally:
        hashes.close()


def format_report(report: dict[str, Any]) -> str:
    """The human-readable summary on stdout."""
    tasks = report["tasks"]
    lines = [f"tasks: {tasks['total']} ({tasks['reviewed']} reviewed, {tasks['unreviewed']} unreviewed)"]
    if tasks["predictions_ids_only"]:
        lines.append(f"  {tasks['predictions_ids_only']} prediction(s) in the export are ids only and not counted "
                     "(run on the live project to count them)")
    header = (f"  {'label':<16}{'pred':>6}{'rev':>6}{'acc':>6}{'edit':>6}{'relab':>6}{'del':>6}{'add':>6}"
              f"{'mIoU':>8}{'s/obj':>8}{'req/obj':>9}")

    def rows(labels: dict[str, Any]) -> list[str]:
        def fmt(value: Any, width: int, digits: int) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

        return [
            f"  {name:<16}{row['predicted']:>6}{row['reviewed']:>6}{row['accepted']:>6}{row['edited']:>6}"
            f"{row['relabeled']:>6}{row['deleted']:>6}{row['added']:>6}{fmt(row['mean_iou'], 8, 3)}"
            f"{fmt(row['median_lead_time_s'], 8, 1)}{fmt(row['requests_per_object'], 9, 2)}"
            for name, row in labels.items()
        ]

    lines += [header, *rows(report["labels"])]
    if len(report["model_versions"]) > 1:
        for version, scope in report["model_versions"].items():
            lines += [f"model version {version or '(none)'}{_trained_on_text(scope)}:", header, *rows(scope["labels"])]
    lines += _learning_curve_lines(report)
    time = report["time"]
    saved = report["time_saved_estimate"]
    lines.append(f"lead time: median {time['median_lead_time_s_per_task']} s per task, "
                 f"{time['median_lead_time_s_per_object']} s per object ({time['annotations_with_lead_time']} "
                 "annotations)")
    lines.append(f"time saved (estimate, baseline {saved['baseline_s_per_object']} s per object): "
                 f"{saved['saved_s']} s of {saved['manual_s']} s")
    if report.get("uncertain") == []:
        lines.append("  uncertain: no unreviewed task with a scored prediction")
    for task in report.get("uncertain") or []:
        lines.append(f"  uncertain: task {task['task_id']} score {task['score']:.3f} {task['url'] or ''}".rstrip())
    lines += _diverse_lines(report.get("diverse"))
    for failure in report["failures"][:20]:
        lines.append(f"  failed: {failure}")
    return "\n".join(lines)


def _trained_on_text(scope: dict[str, Any]) -> str:
    count = scope.get("trained_on_reviewed_tasks")
    return "" if count is None else f" (trained on {count} reviewed tasks)"


def _learning_curve_lines(report: dict[str, Any]) -> list[str]:
    """Acceptance per model version, with the reviewed tasks each was trained on ("-": not a trained model)."""
    curve = report.get("learning_curve") or []
    if not any(row["trained_on_reviewed_tasks"] is not None for row in curve):
        return []
    lines = ["learning curve (acceptance per model version):",
             f"  {'trained on':>10}{'reviewed':>10}{'accepted':>10}{'acceptance':>12}  model version"]
    for row in curve:
        trained = "-" if row["trained_on_reviewed_tasks"] is None else str(row["trained_on_reviewed_tasks"])
        acceptance = "-" if row["acceptance"] is None else f"{row['acceptance']:.3f}"
        lines.append(f"  {trained:>10}{row['reviewed_objects']:>10}{row['accepted']:>10}{acceptance:>12}  "
                     f"{row['model_version'] or '(none)'}")
    return lines


def _diverse_lines(diverse: dict[str, Any] | None) -> list[str]:
    if diverse is None:
        return []
    lines = [f"diverse first (k-center over the cached embeddings of {diverse['model_id'] or 'no model'}): "
             f"{diverse['unreviewed']} unreviewed task(s), {diverse['without_embedding']} without an embedding "
             "(listed last)"]
    for task in diverse["tasks"]:
        spread = "" if task["distance"] is None else f" distance {task['distance']:.3f}"
        missing = "" if task["embedding"] else " (no embedding)"
        lines.append(f"  diverse #{task['rank']}: task {task['task_id']}{spread}{missing} {task['url'] or ''}".rstrip())
    return lines


def report_command(config: Config, args: argparse.Namespace) -> int:
    """Print the report (``--json`` for JSON) and write ``--out``; 0 ok, 1 some tasks failed, 2 no source."""
    from batchlabel.config import ConfigError
    from batchlabel.dataset.ls_export import DatasetError
    from batchlabel.report.render import write_report_files

    for flag, value in (("--uncertain", args.uncertain), ("--diverse", args.diverse)):
        if value is not None and value < 0:
            raise ConfigError(f"{flag}: expected a count >= 0, got {value}")
    try:
        report = build_report(config, from_export=Path(args.from_export) if args.from_export else None,
                              uncertain=args.uncertain, uncertain_tab=args.uncertain_tab, diverse=args.diverse,
                              diverse_tab=args.diverse_tab)
    except DatasetError as error:
        print(f"batchlabel report: {error}", file=sys.stderr)
        return 2
    if args.out:
        report["files"] = {kind: str(path) for kind, path in write_report_files(report, Path(args.out)).items()}
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if report["failures"] else 0
