"""mmdetection 3.x training configs rendered from the Jinja2 templates shipped in ``batchlabel/dataset/templates``.

The rendered file is a complete, self-contained mmengine config (no ``_base_``): it parses with
``mmengine.Config.fromfile`` without mmdetection installed, names the dataset's classes in category-id order, sets
``num_classes`` in every head, reads ``annotations/train.json`` for training and ``annotations/val.json`` for the
validation loop and its ``CocoMetric`` evaluator (train and val are never the same file).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEMPLATES = ("mask-rcnn_r50_fpn", "rtmdet-ins_s")
#: Default training length of each template, in epochs.
DEFAULT_MAX_EPOCHS = {"mask-rcnn_r50_fpn": 12, "rtmdet-ins_s": 100}


def _python_literal(value: Any) -> str:
    """A Python literal for a str / number / list / tuple value (classes become a tuple, as mmdet expects)."""
    if isinstance(value, list):
        value = tuple(value)
    return repr(value)


def render_mmdet_config(
    template: str,
    *,
    data_root: Path,
    classes: Sequence[str],
    num_train_images: int,
    num_val_images: int,
    config_path: Path,
    train_ann_file: str = "annotations/train.json",
    val_ann_file: str = "annotations/val.json",
    img_prefix: str = "images/",
    seed: int = 0,
    keep_empty: bool = False,
    max_epochs: int | None = None,
) -> str:
    """Render one template to config text.

    Args:
        template: one of :data:`TEMPLATES`.
        data_root: the dataset folder (absolute; written with a trailing slash).
        classes: category names in category-id order (id 1 first).
        num_train_images / num_val_images: for the header comment; ``num_val_images == 0`` renders no val loop.
        config_path: where the config will be written (for the header's "train with" line).
        keep_empty: the dataset keeps negative images on purpose, so training does not filter them out.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    from batchlabel import __version__

    if template not in TEMPLATES:
        raise ValueError(f"unknown mmdetection template {template!r}; expected one of {list(TEMPLATES)}")
    if not classes:
        raise ValueError("an mmdetection config needs at least one class")
    env = Environment(
        loader=PackageLoader("batchlabel.dataset", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = _python_literal
    root = str(Path(data_root).absolute()).rstrip("/") + "/"
    return env.get_template(f"{template}.py.j2").render(
        batchlabel_version=__version__,
        template=template,
        config_path=str(config_path),
        data_root=root,
        classes=list(classes),
        num_classes=len(classes),
        num_train_images=num_train_images,
        num_val_images=num_val_images,
        train_ann_file=train_ann_file,
        val_ann_file=val_ann_file,
        img_prefix=img_prefix,
        seed=seed,
        filter_empty_gt=not keep_empty,
        max_epochs=max_epochs or DEFAULT_MAX_EPOCHS[template],
    )


def write_mmdet_config(template: str, out_dir: Path, *, data_root: Path | None = None, **kwargs: Any) -> Path:
    """Render ``template`` into ``out_dir/<template>.py`` and return the path.

    ``data_root`` (default ``out_dir``): the dataset folder the config points at, when the file is written into a
    staging folder that will be moved there.
    """
    root = Path(data_root) if data_root is not None else Path(out_dir)
    path = Path(out_dir) / f"{template}.py"
    text = render_mmdet_config(template, data_root=root, config_path=root / path.name, **kwargs)
    path.write_text(text, encoding="utf-8")
    return path
