"""The face of ``--ray``: ``batchlabel encode --ray`` (:func:`ray_encode_command`) and ``run --ray``'s cluster pass
(:func:`prefetch_on_cluster`), with the command's one progress bar and its report. The cluster work itself is
:mod:`batchlabel.ingest.ray_encode`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING

from batchlabel.commands.progress import file_progress
from batchlabel.config import Config
from batchlabel.ingest.ray_encode import (
    LOCAL_ADDRESS,
    ClusterResult,
    RayUnavailableError,
    encode_on_cluster,
    pending_rel_paths,
    prefetch_for_run,
)

if TYPE_CHECKING:
    from batchlabel.ingest.journal import Journal
    from batchlabel.ingest.ray_encode import ClusterSummary, PredictionSpool


def ray_encode_command(config: Config, args: argparse.Namespace, rel_paths: list[str], journal: Journal | None) -> int:
    """``batchlabel encode CONFIG --ray [ADDRESS] [--ray-actors N]``: ``rel_paths`` (the local ``encode``'s
    selection, made by it) encoded on the cluster; failures printed and journaled in ``journal`` (None: another
    process holds the writer lock and the journal). Exit codes as ``encode`` (2 also when Ray is missing or
    unreachable)."""
    as_json = bool(getattr(args, "json", False))
    address = _address(args)
    with file_progress(args, total=len(rel_paths), desc="encode (ray)") as progress:
        def record(result: ClusterResult) -> None:
            if result.error is not None:
                progress.write(f"{result.rel_path}: {result.error}")
            if journal is not None:
                journal.record_encode(result.rel_path, sha256=result.sha256, model_id=result.model_id,
                                      error=result.error)
            progress.update()

        try:
            with contextlib.redirect_stdout(sys.stderr):  # Ray's own messages; stdout is the report's
                summary = encode_on_cluster(config, rel_paths, address=address,
                                            actors=getattr(args, "ray_actors", None), on_result=record)
        except RayUnavailableError as error:
            print(f"batchlabel encode: {error}", file=sys.stderr)
            return 2
    model_ids = sorted(summary.model_ids)
    report = {**summary.as_dict(), "ray_address": args.ray, "model_id": ", ".join(model_ids)}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(f"encoded {summary.encoded}, already stored {summary.cached}, failed {len(summary.failures)} of "
              f"{summary.images} images with {report['model_id']} on {summary.actors} Ray actor(s) "
              f"in {summary.wall_s:.1f} s")
    return 1 if summary.failures else 0


def prefetch_on_cluster(config: Config, args: argparse.Namespace) -> tuple[ClusterSummary, PredictionSpool | None]:
    """``run --ray``'s first pass (:func:`batchlabel.ingest.ray_encode.prefetch_for_run`) with its progress bar; Ray's
    own messages go to stderr (stdout is the report's). Raises :class:`RayUnavailableError`."""
    rel_paths = list(pending_rel_paths(config))
    with (file_progress(args, total=len(rel_paths), desc="encode (ray)") as progress,
          contextlib.redirect_stdout(sys.stderr)):
        return prefetch_for_run(config, rel_paths, address=_address(args), actors=getattr(args, "ray_actors", None),
                                on_result=lambda result: progress.update())


def _address(args: argparse.Namespace) -> str | None:
    return args.ray if args.ray != LOCAL_ADDRESS else None
