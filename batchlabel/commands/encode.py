"""``batchlabel encode`` and ``batchlabel export-onnx``.

``encode``: every image under ``storage.root`` matching ``storage.include`` and none of ``storage.exclude`` goes
through the embedding store (an image already stored is not encoded again). A progress bar shows on a terminal; each
file that fails is reported on stderr as ``<relative path>: <reason>`` and recorded in the journal (so
``batchlabel status`` lists it). Stdout gets a one-line summary, or a JSON object with ``--json``.
Exit code 0 when every image is embedded, 1 when some failed, 2 for a config or weights problem.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from batchlabel.config import Config

log = logging.getLogger(__name__)

ENCODE_STAGE = "encode"


def find_images(root: Path, include: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """Files under ``root`` selected by the include/exclude globs, sorted: the same selection as ``run``/``watch``
    (:class:`batchlabel.ingest.discovery.PathFilter`: case-insensitive, hidden and temporary files skipped)."""
    from batchlabel.ingest.discovery import PathFilter, scan

    return sorted(scan(root, PathFilter(tuple(include), tuple(exclude))))


def encode_command(config: Config, args: argparse.Namespace) -> int:
    """Encode every image under the document root into the embedding store. See the module docstring."""
    if getattr(args, "ray", None) is not None:
        from batchlabel.ingest.ray_encode import ray_encode_command

        return ray_encode_command(config, args)
    from batchlabel.infer.engine import build_engine
    from batchlabel.infer.models import WeightsUnavailableError
    from batchlabel.ingest.journal import Journal

    as_json = bool(getattr(args, "json", False))
    root = config.storage.root
    if not root.is_dir():
        print(f"batchlabel encode: storage.root {root} is not a folder", file=sys.stderr)
        return 2
    paths = find_images(root, config.storage.include, config.storage.exclude)
    try:
        engine = build_engine(config.model, config.cache, decoder="none")
    except WeightsUnavailableError as exc:
        print(f"batchlabel encode: model weights unavailable: {exc}", file=sys.stderr)
        return 2
    model, store, encoder = engine.model, engine.store, engine.encoder
    journal = Journal(config.journal_path)
    failures: list[dict[str, str]] = []
    progress = None
    if sys.stderr.isatty() and not getattr(args, "no_progress", False):
        from tqdm import tqdm

        progress = tqdm(total=len(paths), unit="img", desc="encode", file=sys.stderr)
    start = time.perf_counter()
    try:
        for result in encoder.encode_files(paths):
            rel = result.path.relative_to(root).as_posix()
            if result.error is not None:
                failures.append({"path": rel, "reason": result.error})
                line = f"{rel}: {result.error}"
                if progress is not None:
                    progress.write(line, file=sys.stderr)
                else:
                    print(line, file=sys.stderr)
                journal.mark_failed(rel, ENCODE_STAGE, result.error, result.sha256)
            elif result.sha256 is not None:
                journal.mark_encoded(rel, result.sha256, model.model_id)
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        journal.close()
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
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"encoded {stats.encoded}, already stored {stats.cached}, failed {stats.failed} of {len(paths)} images "
            f"with {model.model_id} ({encoder.runtime.name}, {encoder.runtime.precision}) in {wall_s:.1f} s"
        )
    return 1 if failures else 0


def export_onnx_command(config: Config, args: argparse.Namespace) -> int:
    """Export the configured model's encoder and decoder to ONNX (``--out`` or ``<cache.dir>/onnx``)."""
    from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
    from batchlabel.infer.models import WeightsUnavailableError, load_model
    from batchlabel.infer.onnx_export import export_onnx

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
