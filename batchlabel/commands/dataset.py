"""``batchlabel build-dataset`` and ``batchlabel preview``: argument handling and the report printed on stdout."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from batchlabel.config import Config

log = logging.getLogger(__name__)


def options_from_args(config: Config, args: argparse.Namespace) -> Any:
    """:class:`~.builder.BuildOptions` from the command line, defaults from ``config.dataset``."""
    from batchlabel.config import ConfigError
    from batchlabel.dataset.builder import BuildOptions

    val_fraction = config.dataset.val_fraction if args.val_fraction is None else args.val_fraction
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction: expected a number in [0, 1), got {val_fraction}")
    if getattr(args, "preview", 0) < 0:
        raise ConfigError(f"--preview: expected a count >= 0, got {args.preview}")
    return BuildOptions(
        out=Path(args.out) if args.out else config.dataset.out,
        from_export=Path(args.from_export) if args.from_export else None,
        val_fraction=val_fraction,
        seed=config.dataset.seed if args.seed is None else args.seed,
        template=args.template or config.dataset.template,
        segmentation=args.segmentation,
        keep_empty=args.keep_empty,
        mask_boxes=args.mask_boxes,
        preview=args.preview,
        if_changed=args.if_changed,
        formats=tuple(dict.fromkeys(args.formats)) if getattr(args, "formats", None) else config.dataset.formats,
        polygon_tolerance_px=config.dataset.polygon_tolerance_px,
    )


def format_report(report: Any) -> str:
    """The human-readable summary: where, how many, categories with per-split counts, warnings, failures."""
    if report.status == "unchanged":
        return f"dataset {report.out} is up to date (annotations unchanged); nothing built"
    counts = report.counts
    lines = [
        f"dataset written to {report.out} in {report.elapsed_s:.1f} s",
        f"  images: {counts['images']} ({counts['train_images']} train, {counts['val_images']} val), "
        f"objects: {counts['objects']}",
        f"  tasks: {counts['tasks']} read, {counts['tasks_unannotated']} without annotations"
        f"{' (kept as negatives)' if counts.get('empty_images_kept') else ' (skipped)'}, "
        f"{counts['tasks_annotated_empty']} annotated with no objects, {counts['tasks_failed']} failed",
        "  categories (id name: train / val objects):",
    ]
    for index, name in enumerate(report.categories):
        sides = report.per_class.get(name, {"train": 0, "val": 0})
        lines.append(f"    {index + 1:>3} {name}: {sides['train']} / {sides['val']}")
    if report.formats:
        lines.append(f"  formats: {', '.join(report.formats)}; image files: {report.image_files.get('link', 0)} hard "
                     f"links, {report.image_files.get('copy', 0)} copies"
                     + (" (the source is on another filesystem: copied once, other formats link to the copy)"
                        if report.image_files.get("copy") else ""))
    for warning in report.warnings:
        lines.append(f"  warning: {warning}")
    for failure in report.failures[:20]:
        lines.append(f"  failed: {failure}")
    if len(report.failures) > 20:
        lines.append(f"  ... and {len(report.failures) - 20} more failures (see manifest.json)")
    if report.previews:
        lines.append(f"  previews: {report.previews[0].parent}")
    return "\n".join(lines)


def build_dataset_command(config: Config, args: argparse.Namespace) -> int:
    """Build the dataset; 0 ok, 1 some tasks failed (listed), 2 nothing could be built (message on stderr)."""
    import sys

    from batchlabel.dataset.builder import build_dataset
    from batchlabel.dataset.ls_export import DatasetError

    options = options_from_args(config, args)
    box_masker = None
    try:
        if options.mask_boxes:
            from batchlabel.dataset.mask_boxes import sam_box_masker

            box_masker = sam_box_masker(config)
        report = build_dataset(config, options, box_masker=box_masker)
    except DatasetError as error:
        print(f"batchlabel build-dataset: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only or vanished folder: nothing was replaced
        where = f" ({error.filename})" if error.filename else ""
        print(f"batchlabel build-dataset: cannot write the dataset: {error.strerror or error}{where}; "
              f"{options.out} is unchanged (the build is written beside it and moved into place at the end). "
              "Run it again once the cause is gone", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(format_report(report))
    return 1 if report.failures else 0


def preview_command(config: Config, args: argparse.Namespace) -> int:
    """Render overlays and a contact sheet for a built dataset folder."""
    import sys

    from batchlabel.dataset.ls_export import DatasetError
    from batchlabel.dataset.preview import render_previews

    try:
        paths = render_previews(Path(args.dataset_dir), limit=args.limit)
    except DatasetError as error:
        print(f"batchlabel preview: {error}", file=sys.stderr)
        return 2
    print(f"{len(paths)} preview images in {paths[0].parent if paths else args.dataset_dir}")
    return 0
