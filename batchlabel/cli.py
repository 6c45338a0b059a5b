"""The ``batchlabel`` command line.

The config is read and validated here, once, and the typed :class:`~batchlabel.config.Config` is passed down to each
subcommand's implementation. Each implementation is a function ``(config, args) -> exit code`` in a ``commands`` module
of its package, imported only when that subcommand runs (``batchlabel --help`` stays fast and torch-free).

Exit codes: 0 success, 1 some work failed (each failure reported), 2 config or usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from batchlabel import __version__
from batchlabel.config import DATASET_FORMATS, Config, ConfigError, load_config
from batchlabel.ingest.journal import JournalCorruptError

log = logging.getLogger("batchlabel")

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_CONFIG = 2


@dataclass(frozen=True)
class Subcommand:
    name: str
    summary: str
    target: str  # "module:function", the function takes (config, args) and returns an exit code
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="encode on a Ray cluster: auto, HOST:PORT of the head or ray://HOST:PORT "
                             "(no ADDRESS: a local Ray); needs batchlabel[ray] and a store every node sees")
    parser.add_argument("--ray-actors", type=int, metavar="N",
                        help="model-holding Ray actors (default: one per GPU of the cluster, else one per CPU)")


def _encode_arguments(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    _ray_arguments(parser)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    parser.add_argument("--retry-failed", action="store_true",
                        help="retry every failed file now, permanent failures included (transient ones are retried "
                             "by every run with back-off anyway)")
    parser.add_argument("--lock-wait-s", type=float, default=300.0, metavar="S",
                        help="wait up to S seconds for another run/encode/train writing the same cache folder "
                             "(default 300; a watch or up holding it takes the files: exit 0 at once)")
    parser.add_argument("--prune-missing", action="store_true",
                        help="delete the tasks of files gone from the document root that have no annotation "
                             "(annotated ones are kept and listed)")
    _ray_arguments(parser)


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary-every-s", type=float, default=60.0, help="seconds between summary log lines")


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="override serve.host")
    parser.add_argument("--port", type=int, help="override serve.port")


def _build_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-export", metavar="FILE", help="read a Label Studio JSON export instead of the project")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: dataset.out)")
    parser.add_argument("--val-fraction", type=float, help="fraction of images in val (default: dataset.val_fraction)")
    parser.add_argument("--seed", type=int, help="split seed (default: dataset.seed)")
    parser.add_argument("--template", choices=["mask-rcnn_r50_fpn", "rtmdet-ins_s"], help="mmdetection config template")
    parser.add_argument("--segmentation", choices=["rle", "polygon"], default="rle", help="COCO segmentation format")
    parser.add_argument("--format", dest="formats", action="append", choices=DATASET_FORMATS, metavar="NAME",
                        help=f"write this format (repeatable; overrides dataset.formats): {', '.join(DATASET_FORMATS)}")
    parser.add_argument("--keep-empty", action="store_true", help="keep images without objects as negatives")
    parser.add_argument("--mask-boxes", action="store_true", help="turn box-only objects into SAM masks")
    parser.add_argument("--preview", type=int, default=0, metavar="N", help="also render N preview overlays")
    parser.add_argument("--if-changed", action="store_true", help="rebuild only when annotations changed")
    _json_flag(parser)


def _preview_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset_dir", metavar="DIR", help="a folder written by build-dataset")
    parser.add_argument("--limit", type=int, default=16, help="at most this many overlays")


def _export_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <cache.dir>/onnx)")


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-export", metavar="FILE", help="read a Label Studio JSON export instead of the project")
    parser.add_argument("--out", metavar="DIR", help="also write report.json, report.png and report.html here")
    parser.add_argument("--uncertain", type=int, metavar="N", help="list the N least certain unreviewed tasks")
    parser.add_argument("--uncertain-tab", action="store_true",
                        help="create or update the Data Manager tab 'uncertain first' (live project)")
    parser.add_argument("--diverse", type=int, metavar="N",
                        help="list N unreviewed tasks that cover the data's variety (k-center over cached embeddings)")
    parser.add_argument("--diverse-tab", action="store_true",
                        help="rank them (--diverse N, default 50) in the Data Manager tab 'diverse first' (live)")
    _json_flag(parser)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    parser.add_argument("--epochs", type=int, metavar="N", help="override train.epochs")
    parser.add_argument("--force", action="store_true",
                        help="train even when the newest model saw the same reviewed data")
    parser.add_argument("--no-repredict", action="store_true",
                        help="do not pre-annotate the unreviewed tasks with the new model afterwards")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="train as one task on a Ray cluster (one GPU when it has one): auto, HOST:PORT of the "
                             "head or ray://HOST:PORT (no ADDRESS: a local Ray); needs batchlabel[ray] and a "
                             "cache.dir every node sees")


def _up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-watch", action="store_true", help="do not start the ingestion daemon")


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("check", "validate the config, reach Label Studio, find the model files; print a report",
               "batchlabel.commands.check:check_command"),
    Subcommand("encode", "compute SAM embeddings for every image under the document root into the store",
               "batchlabel.commands.encode:encode_command", _encode_arguments),
    Subcommand("run", "one ingestion pass: new images -> tasks -> embeddings -> pre-annotations, then exit",
               "batchlabel.commands.ingest:run_command", _run_arguments),
    Subcommand("watch", "ingestion daemon: watch the document root and keep Label Studio up to date",
               "batchlabel.commands.ingest:watch_command", _watch_arguments),
    Subcommand("status", "counts per stage, failures with reasons, store size, Label Studio reachability",
               "batchlabel.commands.ingest:status_command", _status_arguments),
    Subcommand("serve", "Label Studio ML backend: interactive Point2Label/Bbox2Label on cached embeddings",
               "batchlabel.commands.serve:serve_command", _serve_arguments),
    Subcommand("build-dataset", "export annotations as a COCO RLE dataset with a train/val split and mmdet config",
               "batchlabel.commands.dataset:build_dataset_command", _build_dataset_arguments),
    Subcommand("preview", "render mask/box overlays and a contact sheet for a built dataset",
               "batchlabel.commands.dataset:preview_command", _preview_arguments),
    Subcommand("export-onnx", "export the configured model's encoder and decoder to ONNX for the fast CPU path",
               "batchlabel.commands.encode:export_onnx_command", _export_onnx_arguments),
    Subcommand("report", "what the assistance saved: outcomes per label and model version, times, uncertain tasks",
               "batchlabel.commands.report:report_command", _report_arguments),
    Subcommand("train", "fine-tune a detector on the reviewed tasks, then pre-annotate the unreviewed ones with it",
               "batchlabel.commands.train:train_command", _train_arguments),
    Subcommand("up", "the whole stack: embedded Label Studio, project, ML backend and the watcher",
               "batchlabel.commands.up:up_command", _up_arguments),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchlabel",
        description="Turn a folder of images into a SAM pre-annotated Label Studio project and a COCO RLE dataset.",
    )
    parser.add_argument("--version", action="version", version=f"batchlabel {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        child = sub.add_parser(command.name, help=command.summary, description=command.summary)
        child.add_argument("config", metavar="CONFIG", help="path to a batchlabel YAML config")
        if command.add_arguments is not None:
            command.add_arguments(child)
        child.set_defaults(subcommand=command)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("httpx", "httpcore", "urllib3", "watchdog", "PIL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _resolve(target: str) -> Callable[[Config, argparse.Namespace], int]:
    """The subcommand's implementation, imported only now (an import error is a real error, not "not implemented")."""
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    command: Subcommand = args.subcommand
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"batchlabel {command.name}: config error\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    function = _resolve(command.target)
    try:
        return int(function(config, args))
    except ConfigError as exc:
        print(f"batchlabel {command.name}: config error\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except JournalCorruptError as exc:
        print(f"batchlabel {command.name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
