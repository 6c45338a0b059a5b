"""Build an instance-segmentation dataset from a Label Studio project or JSON export, in one or more formats.

Layout of a built dataset (``--out DIR``) with the default format, ``coco``::

    DIR/annotations/all.json, train.json, val.json   COCO, RLE (or polygon) segmentation, iscrowd 0
    DIR/images/<path relative to storage.root>        hard links to the labeled files (copies across filesystems)
    DIR/<template>.py                                 mmdetection 3.x config (see :mod:`.mmdet`)
    DIR/manifest.json                                 provenance (see :mod:`.manifest`), every format written

``BuildOptions.formats`` adds (or, without ``coco``, writes only) ``coco-polygon``, ``yolo`` and ``voc``, all from
the same spool and the same split (see :mod:`.exports`).

Flow (bounded memory: tasks stream from the export; each converted image goes to a spool file on disk and only a
small per-image summary stays in memory): export -> convert every task (and render its other formats from the masks
in memory, :class:`~.exports.ExportRenderer`) -> split -> link images, hash them -> write the three COCO files from
the spool in image-id order (and the other formats' split-dependent files) -> manifest and mmdet config -> move the
finished folder into place (everything is written into ``.<out>.partial-<pid>`` first: a failed build never leaves
a half-written dataset behind).

Image ids are Label Studio task ids; annotation ids count from 1 in image-id order, the same in all three files. The
output does not depend on the order tasks arrive in, so a live project and a JSON export of it give identical files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from batchlabel.dataset.convert import BoxMasker, Finding, TaskConverter
from batchlabel.dataset.ls_export import (
    DatasetError,
    ExportSource,
    export_file_source,
    export_project,
    image_data_key,
    iter_export_tasks,
    select_annotation,
    task_list,
)
from batchlabel.dataset.manifest import FORMAT_VERSION, fingerprint, read_manifest, write_manifest

log = logging.getLogger(__name__)

#: Finding messages kept per kind in the report and manifest (all of them are counted).
MAX_MESSAGES_PER_KIND = 20
#: Findings that are expected and only counted (not warned about).
_QUIET_FINDINGS = ("box_only",)
@dataclass(frozen=True)
class BuildOptions:
    """What ``build-dataset`` was asked for (defaults from ``config.dataset``)."""

    out: Path
    from_export: Path | None = None
    val_fraction: float = 0.2
    seed: int = 0
    template: str = "mask-rcnn_r50_fpn"
    segmentation: Literal["rle", "polygon"] = "rle"
    keep_empty: bool = False
    mask_boxes: bool = False
    preview: int = 0
    if_changed: bool = False
    #: compare the fingerprint with this dataset's manifest instead of ``out``'s (versioned builds)
    compare_with: Path | None = None
    #: the formats written (:data:`~batchlabel.config.DATASET_FORMATS`), each once
    formats: tuple[str, ...] = ("coco",)
    #: Douglas-Peucker tolerance of the exported polygons (coco-polygon, yolo), pixels
    polygon_tolerance_px: float = 0.25
    #: processes rendering coco-polygon/yolo/voc files beside this one; None: one per CPU core once
    #: :data:`~.exports.PARALLEL_EXPORT_MIN_IMAGES` tasks were rendered (the output is the same either way)
    export_workers: int | None = None

    def __post_init__(self) -> None:
        from batchlabel.config import DATASET_FORMATS

        unknown = [name for name in self.formats if name not in DATASET_FORMATS]
        if unknown or not self.formats or len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats must be distinct names among {list(DATASET_FORMATS)}, got {list(self.formats)}")

    def output_options(self) -> dict[str, Any]:
        """The options that change the files written (part of the fingerprint).

        ``formats`` and ``polygon_tolerance_px`` appear only when other formats than ``coco`` are asked for, so a
        COCO-only build keeps the fingerprint it had before formats existed.
        """
        options: dict[str, Any] = {
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "template": self.template,
            "segmentation": self.segmentation,
            "keep_empty": self.keep_empty,
            "mask_boxes": self.mask_boxes,
        }
        if tuple(self.formats) != ("coco",):
            options["formats"] = list(self.formats)
            options["polygon_tolerance_px"] = self.polygon_tolerance_px
        return options


@dataclass
class BuildReport:
    """What a build did. ``status``: ``"built"`` or ``"unchanged"`` (``--if-changed`` found nothing new)."""

    status: str
    out: Path
    categories: list[str]
    counts: dict[str, Any] = field(default_factory=dict)
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    finding_counts: dict[str, int] = field(default_factory=dict)
    finding_messages: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""
    elapsed_s: float = 0.0
    previews: list[Path] = field(default_factory=list)
    #: format name -> what was written (files, counts); see the manifest's ``formats``
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: image files placed in the dataset: ``{"link": n, "copy": n}`` (hard links, or copies across filesystems)
    image_files: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "out": str(self.out),
            "categories": [{"id": index + 1, "name": name} for index, name in enumerate(self.categories)],
            "counts": self.counts,
            "per_class": self.per_class,
            "findings": self.finding_counts,
            "failures": self.failures,
            "warnings": self.warnings,
            "fingerprint": self.fingerprint,
            "elapsed_s": round(self.elapsed_s, 3),
            "formats": self.formats,
            "image_files": self.image_files,
        }


@dataclass
class _Entry:
    """What stays in memory per image while building."""

    task_id: int
    rel_path: str
    path: Path
    width: int
    height: int
    annotation: dict[str, Any] | None
    categories: frozenset[int]
    num_objects: int
    offset: int
    length: int


def _fingerprint_entry(task: dict[str, Any], annotation: dict[str, Any] | None) -> tuple[Any, ...]:
    data = task.get("data")
    image = json.dumps(data, sort_keys=True, default=str) if isinstance(data, dict) else None
    if annotation is None:
        return (task.get("id"), image, None, None)
    return (task.get("id"), image, annotation.get("id"), annotation.get("updated_at"))


def _selected_or_none(task: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return select_annotation(task)
    except DatasetError:
        return None


def export_fingerprint(path: Path, *, labels: list[str], options: BuildOptions) -> str:
    """The fingerprint of an export file without converting anything (one streaming pass)."""
    entries = []
    for task in iter_export_tasks(path):
        entries.append(_fingerprint_entry(task, _selected_or_none(task)))
    return fingerprint(entries, labels=labels, options=options.output_options())


def labels_of(source: ExportSource) -> list[str]:
    """The labeling config's labels, in order (a :class:`DatasetError` naming the source when it has none)."""
    from batchlabel.sync.label_config import parse_control_names

    try:
        _names, labels = parse_control_names(source.label_config)
    except Exception as error:  # noqa: BLE001 - xml.etree raises ParseError; anything else is reported the same
        raise DatasetError(f"cannot read the labeling config of {source.kind} {source.path}: {error}") from None
    if not labels:
        raise DatasetError(
            "the labeling config has no <Label> in BrushLabels/PolygonLabels/RectangleLabels; nothing to build"
        )
    return labels


def _source(config: Any, options: BuildOptions, work: Path, client: Any | None) -> ExportSource:
    if options.from_export is not None:
        return export_file_source(config, options.from_export)
    return export_project(config, dest_dir=work, client=client)


def _prepare_out(out: Path) -> None:
    """Refuse to replace a folder that is not a batchlabel dataset."""
    if out.is_symlink() or not out.exists():
        return
    if not out.is_dir():
        raise DatasetError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / "manifest.json").exists():
        raise DatasetError(f"--out {out} exists, is not empty and is not a batchlabel dataset (no manifest.json); "
                           "choose another folder")


def _remove_killed_stages(out: Path) -> None:
    """Remove ``.<out>.partial-<pid>`` folders of builds that were killed (their process is gone, or its pid now
    belongs to a process that started after the folder was last written)."""
    from batchlabel.sync.server import may_own

    for stage in out.parent.glob(f".{out.name}.partial-*"):
        pid = stage.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or may_own(int(pid), stage):
            continue
        log.info("removing %s, left by a build that was killed (process %s is gone)", stage, pid)
        shutil.rmtree(stage, ignore_errors=True)


def _move_into_place(stage: Path, out: Path) -> None:
    if out.exists() and not out.is_symlink():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        stage.rename(out)


class _Findings:
    """Counts every finding, keeps the first messages of each kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.messages: dict[str, list[str]] = defaultdict(list)

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if len(self.messages[finding.kind]) < MAX_MESSAGES_PER_KIND:
            self.messages[finding.kind].append(finding.message)
        if finding.kind not in _QUIET_FINDINGS:
            log.debug("%s", finding.message)


def build_dataset(
    config: Any, options: BuildOptions, *, client: Any | None = None, box_masker: BoxMasker | None = None
) -> BuildReport:
    """Build the dataset described by ``options`` from the config's project (or ``options.from_export``).

    ``client``: an SDK ``LabelStudio`` to use instead of connecting. ``box_masker``: turns box-only objects into
    masks (``--mask-boxes``; see :mod:`.mask_boxes`). Raises :class:`DatasetError` for problems that stop the build
    (no such project, unreadable export, output folder not ours); per-task problems are in ``report.failures``.
    """
    started = time.perf_counter()
    out = Path(options.out).absolute()
    _prepare_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_killed_stages(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.work-") as work_name:
        work = Path(work_name)
        source = _source(config, options, work, client)
        labels = labels_of(source)
        if options.if_changed:
            previous = read_manifest(options.compare_with or out)
            current = export_fingerprint(source.path, labels=labels, options=options)
            if previous is not None and previous.get("fingerprint") == current:
                log.info("annotations unchanged since %s (fingerprint %s): nothing to build",
                         options.compare_with or out, current[:12])
                return BuildReport("unchanged", options.compare_with or out, labels, fingerprint=current,
                                   elapsed_s=time.perf_counter() - started)
        report = _build(config, options, source, labels, out, work, box_masker)
    report.elapsed_s = time.perf_counter() - started
    if options.preview and report.status == "built":
        if "coco" in options.formats:
            from batchlabel.dataset.preview import render_previews

            report.previews = render_previews(out, limit=options.preview)
        else:
            log.warning("--preview draws the COCO files; not rendered (formats %s)", ", ".join(options.formats))
    return report


def _build(
    config: Any,
    options: BuildOptions,
    source: ExportSource,
    labels: list[str],
    out: Path,
    work: Path,
    box_masker: BoxMasker | None,
) -> BuildReport:
    converter = TaskConverter(
        labels,
        config.storage.root,
        image_key=image_data_key(source.label_config),
        segmentation=options.segmentation,
        polygon_tolerance_px=config.preannotate.polygon_tolerance_px,
        box_masker=box_masker,
    )
    spool_path = work / "spool.jsonl"
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    renderer = None
    try:
        with spool_path.open("w+b") as spool:
            if any(name != "coco" for name in options.formats):
                from batchlabel.dataset.exports import ExportRenderer

                renderer = ExportRenderer(stage, work, options.formats, tolerance_px=options.polygon_tolerance_px,
                                          workers=options.export_workers)
            done = _convert_tasks(source, options, converter, spool, renderer)
            if renderer is not None:
                renderer.finish()
            entries, counts, failures = done.entries, done.counts, done.failures
            if not entries:
                raise DatasetError(
                    f"nothing to build: {counts['tasks']} tasks, {counts['tasks_unannotated']} without annotations, "
                    f"{counts['tasks_annotated_empty']} annotated with no objects, {len(failures)} failed"
                    + (f"; first failure: {failures[0]}" if failures else "")
                )

            from batchlabel.dataset.split import split_images

            split = split_images({tid: e.categories for tid, e in entries.items()},
                                 val_fraction=options.val_fraction, seed=options.seed)
            manifest_images, per_class, ann_total, written = _write_files(
                stage, out, spool, entries, set(split.val), labels, options, done.findings, renderer
            )
            report = _finish(config, options, source, labels, out, stage, entries, split, per_class, ann_total,
                             counts, done.findings, failures, done.fingerprint_entries, done.model_versions,
                             manifest_images, written)
            if renderer is not None:
                renderer.close()
            _move_into_place(stage, out)
    except BaseException:
        if renderer is not None:
            renderer.close()  # its workers write into the stage
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return report


@dataclass
class _Converted:
    """What the conversion pass leaves: the images kept (``entries``, their objects in the spool) and the tallies."""

    entries: dict[int, _Entry] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    findings: _Findings = field(default_factory=_Findings)
    failures: list[str] = field(default_factory=list)
    fingerprint_entries: list[tuple[Any, ...]] = field(default_factory=list)
    model_versions: Counter[str] = field(default_factory=Counter)


def _convert_tasks(
    source: ExportSource, options: BuildOptions, converter: TaskConverter, spool: Any, renderer: Any | None
) -> _Converted:
    """Convert every task of the export into ``spool`` (one JSON line of objects per image) and, with other formats,
    hand it to ``renderer``; then drop the tasks whose image file is another task's."""
    done = _Converted()
    for task in iter_export_tasks(source.path):
        done.counts["tasks"] += 1
        annotation = _selected_or_none(task)
        done.fingerprint_entries.append(_fingerprint_entry(task, annotation))  # as export_fingerprint computes it
        try:
            annotation = select_annotation(task)
            for prediction in task_list(task, "predictions"):
                if isinstance(prediction, dict) and prediction.get("model_version"):
                    done.model_versions[str(prediction["model_version"])] += 1
            if annotation is None:
                done.counts["tasks_unannotated"] += 1
                if not options.keep_empty:
                    continue
            converted = converter.convert(task, annotation)
        except DatasetError as error:
            done.failures.append(str(error))
            log.error("%s", error)
            continue
        for finding in converted.findings:
            done.findings.add(finding)
        if not converted.objects:
            if annotation is not None:
                done.counts["tasks_annotated_empty"] += 1
            if not options.keep_empty:
                continue
        if converted.task_id in done.entries:
            done.failures.append(f"task {converted.task_id}: appears twice in the export")
            continue
        line = json.dumps(
            [[obj.category_id, obj.segmentation, obj.area, obj.bbox] for obj in converted.objects],
            separators=(",", ":"),
        ).encode() + b"\n"
        offset = spool.tell()
        spool.write(line)
        done.entries[converted.task_id] = _Entry(
            converted.task_id, converted.rel_path, converted.path, converted.width, converted.height,
            converted.annotation, frozenset(obj.category_id for obj in converted.objects),
            len(converted.objects), offset, len(line),
        )
        if renderer is not None:
            renderer.render(converted.task_id, converted.rel_path, converted.height, converted.width,
                            converted.objects)

    # the same file in several tasks: keep the lowest task id (one images entry per file)
    by_path: dict[str, int] = {}
    for task_id in sorted(done.entries):
        rel = done.entries[task_id].rel_path
        if rel in by_path:
            done.findings.add(Finding(
                "duplicate_image", task_id,
                f"task {task_id}: image {rel} is also task {by_path[rel]}; task {task_id} skipped",
            ))
            del done.entries[task_id]
        else:
            by_path[rel] = task_id
    return done


def _write_files(
    stage: Path,
    out: Path,
    spool: Any,
    entries: dict[int, _Entry],
    val_ids: set[int],
    labels: list[str],
    options: BuildOptions,
    findings: _Findings,
    renderer: Any | None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], int, dict[str, Any]]:
    """Write every format's files into ``stage``; returns the manifest's images, per-class counts, the number of
    objects and what was written (``{"formats": {name: summary}, "images": {"link": n, "copy": n}}``)."""
    from batchlabel import __version__
    from batchlabel.dataset.exports import ExportWriters, ImagePlacer
    from batchlabel.formats.coco import CocoWriter, categories_for, coco_image
    from batchlabel.infer.images import file_sha256

    categories = categories_for(labels)
    info = {"description": "built by batchlabel build-dataset", "version": __version__,
            "segmentation": options.segmentation}
    annotations_dir = stage / "annotations"
    ordered = sorted(entries)
    write_coco = "coco" in options.formats
    writers = ({name: CocoWriter(annotations_dir / f"{name}.json", categories=categories, info=info)
                for name in ("all", "train", "val")} if write_coco else {})
    exports = ExportWriters(stage, out, renderer, labels, coco_info=info) if renderer is not None else None
    coco_images = write_coco or "coco-polygon" in options.formats  # both name files relative to images/
    placer = ImagePlacer()
    manifest_images: list[dict[str, Any]] = []
    hashes: dict[str, int] = {}
    for image_id in ordered:
        entry = entries[image_id]
        image = coco_image(image_id, entry.rel_path, entry.width, entry.height)
        side = "val" if image_id in val_ids else "train"
        if write_coco:
            writers["all"].add_image(image)
            writers[side].add_image(image)
        targets = [stage / "images" / entry.rel_path] if coco_images else []
        placer.place(entry.path, targets + (exports.image_targets(image, side, image_id) if exports else []))
        digest = file_sha256(entry.path)
        if digest in hashes:
            findings.add(Finding(
                "duplicate_content", image_id,
                f"task {image_id}: image {entry.rel_path} has the same bytes as task {hashes[digest]} "
                "(both are in the dataset; they may land on both sides of the split)",
            ))
        hashes.setdefault(digest, image_id)
        manifest_images.append({
            "id": image_id, "task_id": image_id, "file_name": entry.rel_path, "sha256": digest,
            "width": entry.width, "height": entry.height, "split": side, "annotation": entry.annotation,
            "annotation_ids": [],
        })
    if placer.counts["copy"]:
        log.info("images: %d hard links, %d copies (other filesystem)", placer.counts["link"], placer.counts["copy"])

    per_class: dict[str, dict[str, int]] = {label: {"train": 0, "val": 0} for label in labels}
    annotation_id = 0
    for image_id, manifest_image in zip(ordered, manifest_images, strict=True):
        entry = entries[image_id]
        if not entry.num_objects and exports is None:
            continue
        objects = []
        if entry.num_objects:
            spool.seek(entry.offset)
            objects = json.loads(spool.read(entry.length))
        side = manifest_image["split"]
        annotations = []
        for category_id, segmentation, area, bbox in objects:
            annotation_id += 1
            annotation = {"id": annotation_id, "image_id": image_id, "category_id": category_id,
                          "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": 0}
            if write_coco:
                writers["all"].add_annotation(annotation)
                writers[side].add_annotation(annotation)
            annotations.append(annotation)
            manifest_image["annotation_ids"].append(annotation_id)
            per_class[labels[category_id - 1]][side] += 1
        if exports is not None:
            exports.add_image(side, image_id, annotations)
    for writer in writers.values():
        writer.close()
    summaries = exports.close() if exports is not None else {}
    if write_coco:
        summaries["coco"] = {"files": [f"annotations/{name}.json" for name in ("all", "train", "val")]}
    written = {"formats": {name: summaries[name] for name in options.formats},
               "image_files": {"link": placer.counts["link"], "copy": placer.counts["copy"]}}
    return manifest_images, per_class, annotation_id, written


def _finish(
    config: Any,
    options: BuildOptions,
    source: ExportSource,
    labels: list[str],
    out: Path,
    stage: Path,
    entries: dict[int, _Entry],
    split: Any,
    per_class: dict[str, dict[str, int]],
    ann_total: int,
    counts: Counter[str],
    findings: _Findings,
    failures: list[str],
    fingerprint_entries: list[tuple[Any, ...]],
    model_versions: Counter[str],
    manifest_images: list[dict[str, Any]],
    written: dict[str, Any],
) -> BuildReport:
    from batchlabel import __version__
    from batchlabel.dataset.mmdet import write_mmdet_config

    warnings: list[str] = []
    for label, sides in per_class.items():
        if sides["train"] + sides["val"] == 0:
            warnings.append(f"class {label!r} has no objects")
        elif split.val and sides["val"] == 0:
            warnings.append(f"class {label!r} has no objects in val ({sides['train']} in train)")
    for kind, number in sorted(findings.counts.items()):
        if kind in _QUIET_FINDINGS:
            continue
        first = findings.messages[kind][0] if findings.messages[kind] else ""
        warnings.append(f"{number} x {kind.replace('_', ' ')} (first: {first})")
    if findings.counts.get("box_only"):
        warnings.append(f"{findings.counts['box_only']} objects are boxes without masks (segmentation []): "
                        "instance-segmentation training ignores them; --mask-boxes segments them with SAM")
    if not split.val and options.val_fraction > 0:
        warnings.append(f"only {len(entries)} image(s): no val split (val_fraction {options.val_fraction})")
    for name, summary in written["formats"].items():
        if summary.get("box_polygons"):
            warnings.append(f"{name}: {summary['box_polygons']} objects written as their box polygon "
                            "(box-only objects, or no polygon outline)")
        if summary.get("parts_left_out"):
            warnings.append(f"{name}: {summary['parts_left_out']} detached parts left out of their object's polygon "
                            "(each covers fewer pixels than the cut joining it would fill; the other formats keep "
                            "them)")
        if summary.get("box_only_not_painted"):
            warnings.append(f"{name}: {summary['box_only_not_painted']} box-only objects not painted (no mask)")
        if summary.get("over_254_objects_not_painted"):
            warnings.append(f"{name}: {summary['over_254_objects_not_painted']} objects not painted "
                            "(more than 254 in one image)")
    for message in warnings:
        log.warning("%s", message)

    final_config: Path | None = None
    if "coco" in options.formats:
        config_path = write_mmdet_config(
            options.template, stage, data_root=out, classes=labels, num_train_images=len(split.train),
            num_val_images=len(split.val), seed=options.seed, keep_empty=options.keep_empty,
        )
        final_config = out / config_path.name
    print_counts = {
        "tasks": counts["tasks"],
        "tasks_unannotated": counts["tasks_unannotated"],
        "tasks_annotated_empty": counts["tasks_annotated_empty"],
        "tasks_failed": len(failures),
        "images": len(entries),
        "train_images": len(split.train),
        "val_images": len(split.val),
        "objects": ann_total,
        "empty_images_kept": sum(1 for e in entries.values() if not e.num_objects),
    }
    digest = fingerprint(fingerprint_entries, labels=labels, options=options.output_options())
    for version, number in (source.prediction_model_versions or {}).items():
        model_versions[version] = max(model_versions.get(version, 0), number)
    manifest = {
        "format_version": FORMAT_VERSION,
        "batchlabel_version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {
            "kind": source.kind,
            "label_studio_url": source.url,
            "project_id": source.project_id,
            "project_title": source.project_title,
            "export_file": str(source.path) if source.kind == "export" else None,
            "exported_at": source.exported_at,
            "project_model_version": source.project_model_version,
            "storage_root": str(config.storage.root),
        },
        "options": {**options.output_options(), "config": str(final_config) if final_config else None},
        "formats": written["formats"],
        "image_files": written["image_files"],
        "fingerprint": digest,
        "categories": [{"id": index + 1, "name": name} for index, name in enumerate(labels)],
        "counts": print_counts,
        "per_class": per_class,
        "model_versions": dict(model_versions),
        "annotations_from_predictions": sum(
            1 for e in entries.values() if e.annotation and e.annotation.get("parent_prediction") is not None
        ),
        "annotation_selection": "ground truth first, else the latest non-cancelled annotation",
        "findings": dict(findings.counts),
        "warnings": warnings,
        "failures": failures[:200],
        "images": manifest_images,
    }
    write_manifest(stage, manifest)
    return BuildReport(
        status="built", out=out, categories=labels, counts=print_counts, per_class=per_class,
        finding_counts=dict(findings.counts), finding_messages=dict(findings.messages), failures=failures,
        warnings=warnings, fingerprint=digest, formats=written["formats"], image_files=written["image_files"],
    )
