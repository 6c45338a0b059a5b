"""``batchlabel encode`` and ``batchlabel export-onnx``.

``encode``: every image under ``storage.root`` matching ``storage.include`` and none of ``storage.exclude`` goes
through the embedding store (an image already stored is not encoded again). A progress bar shows on a terminal; each
file that fails is reported on stderr as ``<relative path>: <reason>`` and recorded in the journal (so
``batchlabel status`` lists it). Stdout gets a one-line summary, or a JSON object with ``--json``.
Exit code 0 when every image is embedded, 1 when some failed, 2 for a config or weights problem.

With ``preannotate.mode: detect`` each embedded image also gets its detector proposals
(:mod:`batchlabel.annotate.detect`), one image at a time, stored beside the embeddings so a later ``run`` and serve's
batch ``/predict`` reuse them; the progress output shows the detector's total ETA
(:mod:`batchlabel.annotate.detect_eta`). An image the detector fails on is reported like an encode failure (stage
``detect``; not journaled as failed: ``run`` detects it again).

The journal is written only by the holder of the cache folder's writer lock (:mod:`batchlabel.ingest.writer_lock`):
while a ``run``/``watch`` holds it, ``encode`` still fills the store (safe across processes) but leaves the journal to
that writer, saying so once; that writer finds the embeddings stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchlabel.commands.progress import file_progress
from batchlabel.config import Config

if TYPE_CHECKING:
    from batchlabel.ingest.journal import Journal

log = logging.getLogger(__name__)

ENCODE_STAGE = "encode"
DETECT_STAGE = "detect"


def find_images(root: Path, include: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """Files under ``root`` selected by the include/exclude globs, sorted: the same selection as ``run``/``watch``
    (:class:`batchlabel.ingest.discovery.PathFilter`: case-insensitive, hidden and temporary files skipped)."""
    from batchlabel.ingest.discovery import PathFilter, scan

    return sorted(scan(root, PathFilter(tuple(include), tuple(exclude))))


class _Proposals:
    """Mode ``detect``: the detector's proposals for each embedded image, counted for the summary, with the ETA."""

    def __init__(self, config: Config, total: int) -> None:
        from batchlabel.annotate.detect import get_detector
        from batchlabel.annotate.detect_eta import DetectionEta
        from batchlabel.annotate.preannotate import control_names

        self.config = config
        self.detector = get_detector(config, control_names(config)[1])
        self.eta = DetectionEta(self.detector.detector_id, total)
        self.counts = {"detected": 0, "stored": 0, "failed": 0}

    def add(self, sha256: str, path: Path) -> str | None:
        """Store the image's proposals unless stored already; the failure's reason, or None."""
        from batchlabel.annotate.detect import ensure_proposals

        try:
            detected = ensure_proposals(self.config, self.detector, sha256, path)
        except Exception as error:  # a detector fault on one image: reported, the batch goes on
            self.counts["failed"] += 1
            return f"{type(error).__name__}: {error}"
        self.counts["detected" if detected else "stored"] += 1
        return None

    def eta_text(self, done: int) -> str | None:
        from batchlabel.annotate.detect import detector_timings

        return self.eta.update(done, detector_timings(self.detector.detector_id))

    def summary(self) -> dict[str, Any]:
        from batchlabel.annotate.detect import detector_timings

        timings = detector_timings(self.detector.detector_id)
        return {"detector": self.detector.detector_id, **self.counts,
                "detect_s_per_image": round(sum(timings) / len(timings), 3) if timings else None}


def journal_if_writer(config: Config, stack: ExitStack) -> Journal | None:
    """The journal, opened on ``stack`` with the writer lock held for ``encode``; None (logged) while another process
    (``run``, ``watch``, ...) holds the lock: encoding goes on, the journal is that writer's."""
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.writer_lock import WriterLockBusyError, acquire

    try:
        stack.enter_context(acquire(config, command="encode"))
    except WriterLockBusyError as busy:
        log.warning("%s: encoding into the store without journaling (the journal is that writer's)", busy)
        return None
    return stack.enter_context(Journal(config.journal_path))


def encode_command(config: Config, args: argparse.Namespace) -> int:
    """Encode every image under the document root into the embedding store. See the module docstring."""
    root = config.storage.root
    if not root.is_dir():
        print(f"batchlabel encode: storage.root {root} is not a folder", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        journal = journal_if_writer(config, stack)
        return _encode(config, args, journal)


def _encode(config: Config, args: argparse.Namespace, journal: Journal | None) -> int:
    from batchlabel.infer.engine import build_engine
    from batchlabel.infer.weights import WeightsUnavailableError

    as_json = bool(getattr(args, "json", False))
    root = config.storage.root
    paths = find_images(root, config.storage.include, config.storage.exclude)
    if getattr(args, "ray", None) is not None:
        from batchlabel.commands.ray_encode import ray_encode_command

        return ray_encode_command(config, args, [path.relative_to(root).as_posix() for path in paths], journal)
    try:
        engine = build_engine(config.model, config.cache, decoder="none")
    except WeightsUnavailableError as exc:
        print(f"batchlabel encode: model weights unavailable: {exc}", file=sys.stderr)
        return 2
    model, store, encoder = engine.model, engine.store, engine.encoder
    proposals = None
    if config.preannotate.mode == "detect":
        try:
            proposals = _Proposals(config, len(paths))
        except ValueError as exc:  # DetectorError: missing checkpoint, extra not installed, unknown class
            print(f"batchlabel encode: preannotate.detector: {exc}", file=sys.stderr)
            return 2
    failures: list[dict[str, str]] = []
    start = time.perf_counter()
    with file_progress(args, total=len(paths), desc="encode") as progress:
        def report(rel: str, reason: str, stage: str) -> None:
            failures.append({"path": rel, "stage": stage, "reason": reason})
            progress.write(f"{rel}: {reason}")

        for done, result in enumerate(encoder.encode_files(paths), start=1):
            rel = result.path.relative_to(root).as_posix()
            if journal is not None:
                journal.record_encode(rel, sha256=result.sha256, model_id=model.model_id, error=result.error)
            if result.error is not None:
                report(rel, result.error, ENCODE_STAGE)
            elif (result.sha256 is not None and proposals is not None
                  and (reason := proposals.add(result.sha256, result.path)) is not None):
                report(rel, reason, DETECT_STAGE)
            if proposals is not None:
                progress.postfix(proposals.eta_text(done))
            progress.update()
    wall_s = time.perf_counter() - start
    stats = encoder.stats
    summary = {
        "images": len(paths),
        "encoded": stats.encoded,
        "cached": stats.cached,
        "failed": stats.failed,
        "failures": failures,
        "model_id": model.model_id,
        "backend": encoder.runtime.name,
        "precision": encoder.runtime.precision,
        "device": str(model.device),
        "wall_s": round(wall_s, 3),
        "encoded_per_s": round(stats.encoded / wall_s, 3) if wall_s > 0 else None,
        "stage_s": {
            "load": round(stats.load_s, 3), "encode": round(stats.encode_s, 3), "store": round(stats.store_s, 3)
        },
        "store_bytes": store.size_bytes(),
    }
    if proposals is not None:
        summary["proposals"] = proposals.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"encoded {stats.encoded}, already stored {stats.cached}, failed {stats.failed} of {len(paths)} images "
            f"with {model.model_id} ({encoder.runtime.name}, {encoder.runtime.precision}) in {wall_s:.1f} s"
        )
        if proposals is not None:
            counts = proposals.counts
            print(f"proposals: detected {counts['detected']}, already stored {counts['stored']}, "
                  f"failed {counts['failed']} with {proposals.detector.detector_id}")
    return 1 if failures else 0


def export_onnx_command(config: Config, args: argparse.Namespace) -> int:
    """Export the configured model's encoder and decoder to ONNX (``--out`` or ``<cache.dir>/onnx``)."""
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
    from batchlabel.infer.models import load_model
    from batchlabel.infer.onnx_export import export_onnx
    from batchlabel.infer.weights import WeightsUnavailableError

    if canonical_name(config.model.name) in HF_MODEL_SPECS:
        print(f"batchlabel export-onnx: model.name {config.model.name} runs on transformers; no ONNX export for it "
              "yet (encode and serve use it directly)", file=sys.stderr)
        return 2
    out = Path(args.out) if getattr(args, "out", None) else config.cache.onnx_dir
    try:
        model = load_model(config.model.model_copy(update={"device": "cpu"}))
    except WeightsUnavailableError as exc:
        print(f"batchlabel export-onnx: model weights unavailable: {exc}", file=sys.stderr)
        return 2
    files = export_onnx(model, out)
    print(f"encoder: {files.encoder}\ndecoder: {files.decoder}")
    return 0
