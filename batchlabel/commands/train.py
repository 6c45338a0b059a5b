"""``batchlabel train CONFIG [--json] [--epochs N] [--force] [--no-repredict] [--ray ADDRESS]``: fine-tune a
detector on the project's reviewed tasks, publish it in the model store, then pre-annotate the unreviewed tasks with
it. With ``--ray`` the fitting runs as one task on a Ray cluster (:mod:`batchlabel.ingest.ray_train`), the rest here.

Exit codes: 0 trained, or nothing to do (the newest model saw the same reviewed data); 2 refused, the message names
the cause (no reviewed task, fewer than ``train.min_reviewed``, base weights missing or unreadable, the Ultralytics
extra not installed, a config error); 1 the training or the re-predict failed (nothing half-written is published).
The background trainer of ``serve``/``watch`` starts exactly this command as a subprocess.

After a training (and after "nothing to do", so an interrupted re-predict is finished by the next run): every task
with no annotation is predicted again with the new model through ``run``'s pipeline
(:func:`batchlabel.commands.ingest.repredict_unreviewed`: once per model version, older versions' predictions kept,
the project switched to show the new version). Masks: the model's boxes through SAM's decoder on the cached
embeddings, as ``preannotate.mode: detect`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from batchlabel.config import TRAINED_DETECTOR, Config, DetectorConfig

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURES, EXIT_REFUSED = 0, 1, 2


def repredict_config(config: Config) -> Config:
    """``config`` pre-annotating with the project's newest trained model (``mode: detect``, ``detector.model:
    trained``); the detector's thresholds are kept when the config has that detector already."""
    detector = config.preannotate.detector
    if detector is None or not detector.trained:
        detector = DetectorConfig(model=TRAINED_DETECTOR)
        log.info("run/watch use the trained model for new files only with preannotate.mode: detect and "
                 "preannotate.detector.model: trained in %s", config.source or "the config")
    return config.model_copy(update={"preannotate": config.preannotate.model_copy(
        update={"mode": "detect", "detector": detector})})


class _EpochDisplay:
    """Per-epoch progress on stderr: a tqdm bar with its ETA on a terminal, else one log line per epoch."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bar: Any = None

    def start(self, epochs: int, train_images: int, val_images: int) -> None:
        log.info("training on %d image(s), validating on %d, %d epoch(s)", train_images, val_images, epochs)
        if sys.stderr.isatty() and not getattr(self.args, "json", False):
            from tqdm import tqdm

            self.bar = tqdm(total=epochs, unit="epoch", desc="train", file=sys.stderr)

    def __call__(self, progress: Any) -> None:
        metrics = " ".join(f"{key} {value:.3f}" for key, value in progress.metrics.items())
        if self.bar is not None:
            self.bar.total = progress.epochs
            self.bar.set_postfix_str(metrics, refresh=False)
            self.bar.update(progress.epoch - self.bar.n)
            return
        eta_s = progress.elapsed_s / progress.epoch * (progress.epochs - progress.epoch)
        log.info("epoch %d/%d: %.0f s, ETA %.0f s %s", progress.epoch, progress.epochs, progress.elapsed_s, eta_s,
                 metrics)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _repredict_as_the_writer(config: Config, ls: Any) -> dict[str, Any]:
    """Re-predict the unreviewed tasks holding the cache folder's writer lock (the journal has one writer), waiting
    up to ``RUN_LOCK_WAIT_S`` for a ``run``/``encode``. A ``watch``/``up`` holding it is left to do it: a daemon whose
    config uses ``detector.model: trained`` adopts each new model within ``MODEL_CHECK_S`` and re-predicts
    (``commands.ingest._adopt_newest_model``); the summary says ``skipped``, names the holder and says so."""
    from batchlabel.commands.ingest import MODEL_CHECK_S, RUN_LOCK_WAIT_S, repredict_unreviewed
    from batchlabel.ingest.writer_lock import WriterLockBusyError, acquire

    try:
        with acquire(config, command="train", wait_s=RUN_LOCK_WAIT_S,
                     should_stop_waiting=lambda holder: holder is not None and holder.is_daemon):
            done = repredict_unreviewed(repredict_config(config), ls)
    except WriterLockBusyError as busy:
        daemon = busy.holder is not None and busy.holder.is_daemon
        reason = (f"{busy}: that daemon adopts this model within {MODEL_CHECK_S:.0f} s if its config says "
                  "preannotate.detector.model: trained (it finishes its batch, re-predicts the unreviewed tasks and "
                  "predicts new files with it); otherwise stop it and run `batchlabel train CONFIG` again to "
                  "re-predict (nothing is retrained)"
                  if daemon else f"{busy}: run `batchlabel train CONFIG` again later (nothing is retrained; the "
                  "re-predict is finished then)")
        log.warning("re-predict skipped: %s", reason)
        return {"skipped": reason, "failures": []}
    return {key: done[key] for key in ("model_version", "requeued", "predicted", "pushed", "failures")}


def train_command(config: Config, args: argparse.Namespace) -> int:
    """See the module docstring for what it does and its exit codes."""
    from batchlabel.commands.ingest import _ConfigProblemError, open_label_studio
    from batchlabel.ingest.ray_encode import RayUnavailableError
    from batchlabel.learn.trainer import TrainerError
    from batchlabel.learn.training import TrainRefusedError, train_project
    from batchlabel.learn.ultralytics_trainer import UltralyticsTrainer
    from batchlabel.sync.client import LabelStudioError, LabelStudioUnavailableError

    as_json = bool(getattr(args, "json", False))
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        print(f"batchlabel train: --epochs: expected a positive integer, got {args.epochs}", file=sys.stderr)
        return EXIT_REFUSED
    started = time.perf_counter()
    display = _EpochDisplay(args)
    trainer: Any = UltralyticsTrainer(settings_dir=config.cache.dir / "ultralytics")
    if getattr(args, "ray", None) is not None:  # the fitting as one Ray task; the rest stays here
        from batchlabel.ingest.ray_train import ClusterTrainer

        trainer = ClusterTrainer(trainer, address=args.ray)
    epochs = getattr(args, "epochs", None) or config.train.epochs
    summary: dict[str, Any] = {}
    try:
        with open_label_studio(config) as ls:
            try:
                outcome = train_project(
                    config, trainer, epochs=epochs, force=bool(getattr(args, "force", False)), client=ls,
                    on_epoch=display,
                    on_data=lambda data: display.start(epochs, data.train_images, data.val_images),
                )
            finally:
                display.close()
            model = outcome.model
            summary = {
                "status": outcome.status, "model_version": model.version, "weights": str(model.weights),
                "reviewed_tasks": outcome.data.reviewed_tasks, "train_images": outcome.data.train_images,
                "val_images": outcome.data.val_images, "metrics": model.metrics,
                "epochs": model.manifest.get("epochs"), "train_seconds": model.manifest.get("seconds"),
                "warnings": outcome.warnings,
            }
            if getattr(args, "ray", None) is not None:
                summary["ray"] = {"address": args.ray, "node": trainer.node, "num_gpus": trainer.num_gpus}
            if not getattr(args, "no_repredict", False):
                summary["repredict"] = _repredict_as_the_writer(config, ls)
    except TrainRefusedError as error:
        print(f"batchlabel train: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except RayUnavailableError as error:
        print(f"batchlabel train: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except _ConfigProblemError as problem:
        print(f"batchlabel train: config error\n{problem}", file=sys.stderr)
        return EXIT_REFUSED
    except TrainerError as error:
        print(f"batchlabel train: training failed, no model published: {error}", file=sys.stderr)
        return EXIT_FAILURES
    except (LabelStudioError, LabelStudioUnavailableError) as error:
        print(f"batchlabel train: {error}", file=sys.stderr)
        return EXIT_FAILURES
    summary["seconds"] = round(time.perf_counter() - started, 2)
    failed = bool(summary.get("repredict", {}).get("failures"))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        _print_report(summary)
    return EXIT_FAILURES if failed else EXIT_OK


def _print_report(summary: dict[str, Any]) -> None:
    metrics = " ".join(f"{key} {value:.3f}" for key, value in summary["metrics"].items())
    if summary["status"] == "unchanged":
        print(f"nothing to do: {summary['model_version']} was trained on the same {summary['reviewed_tasks']} "
              "reviewed task(s) (--force trains again)")
    else:
        print(f"trained {summary['model_version']} on {summary['reviewed_tasks']} reviewed task(s) "
              f"({summary['train_images']} train / {summary['val_images']} val images, {summary['epochs']} epochs, "
              f"{summary['train_seconds']} s): {metrics}")
        print(f"weights: {summary['weights']}")
    for warning in summary["warnings"]:
        print(f"WARNING {warning}")
    repredict = summary.get("repredict")
    if repredict is not None and "skipped" in repredict:
        print(f"re-predict skipped: {repredict['skipped']}")
    elif repredict is not None:
        print(f"re-predicted {repredict['requeued']} unreviewed task(s): {repredict['predicted']} with objects, "
              f"pushed {repredict['pushed']} (model version {repredict['model_version']})")
        for failure in repredict["failures"]:
            print(f"FAILED {failure['path']}: {failure['stage']}: {failure['reason']}")
