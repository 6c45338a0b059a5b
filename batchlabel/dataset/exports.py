"""The formats of one dataset build besides COCO RLE: ``coco-polygon``, ``yolo`` and ``voc`` (see ``--format``).

Every format gets the same images, split and categories as the COCO files. Layout under the dataset folder:

    annotations/{all,train,val}_polygon.json   coco-polygon: COCO with polygon segmentation, next to the RLE files
    yolo/                                      yolo: see :mod:`batchlabel.formats.yolo`
    voc/                                       voc: see :mod:`batchlabel.formats.voc`

Two phases, so that the extra formats cost little more than the conversion itself:

1. **Rendering** (:class:`ExportRenderer`), during the conversion pass, task by task: each object's mask, still in
   memory, is traced once into polygon parts, and the image's VOC PNGs and YOLO label file are written into the
   build's stage folder (their content does not depend on the split, which is not known yet; a YOLO label file waits
   in ``.yolo-labels/`` until it is). The coco-polygon segmentations go to a spool file. Large builds render in
   worker processes too: a task goes to a worker (its masks cropped to their boxes and bit-packed) while fewer than
   two per worker are in flight, else it is rendered here, so both the workers and this process stay busy.
2. **Writing** (:class:`ExportWriters`), in image-id order once the split is known: the coco-polygon files, each
   YOLO label file moved into its split's folder, the VOC image sets, ``data.yaml``.

Images: :class:`ImagePlacer` hard-links every image file from the source (a copy when the source is on another
filesystem: one copy per image, every other format's file a hard link to that copy). YOLO and VOC folders are flat,
so their files are named ``<task id>_<file name>`` (:func:`~batchlabel.formats.yolo.export_name`).

Objects that no polygon can describe, counted in the summary and never dropped silently:
- a box-only object (a Label Studio rectangle without a mask) is its box polygon in YOLO, ``segmentation: []`` in
  coco-polygon (as in the COCO RLE file) and not painted in VOC;
- a mask whose outline cannot be traced into a polygon of 3 points (none is known: a one-pixel object is a
  0.5 x 0.5 px square) is written as its box polygon;
- YOLO holds one polygon per object: a part whose cut would draw more background pixels than the part covers (a
  stray pixel far from the rest) is left out of it (``parts_left_out``; coco-polygon and VOC keep every part).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: With the default worker count, rendering moves to worker processes once this many tasks were rendered here
#: (starting a worker costs about a second of CPU; small builds finish sooner without).
PARALLEL_EXPORT_MIN_IMAGES = 200
#: At most this many export worker processes.
MAX_EXPORT_WORKERS = 8
#: Where a rendered YOLO label file waits for its image's split, under the stage folder.
PENDING_LABELS = ".yolo-labels"


def default_export_workers() -> int:
    """One worker per CPU core besides this process's (which renders too), at most :data:`MAX_EXPORT_WORKERS`."""
    from batchlabel.config import cpu_cores

    return min(cpu_cores() - 1, MAX_EXPORT_WORKERS)


class ImagePlacer:
    """Puts image files into a build: a hard link to the source; if that fails (another filesystem), one copy, then
    hard links to that copy for the image's other places. ``counts``: ``{"link": n, "copy": n}``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def place(self, source: Path, targets: Sequence[Path]) -> None:
        placed: Path | None = None
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(placed or source, target)
                self.counts["link"] += 1
            except OSError:
                shutil.copy2(placed or source, target)
                self.counts["copy"] += 1
            placed = placed or target


@dataclass(frozen=True)
class ExportObject:
    """One object as rendering needs it.

    ``box``: ``(x1, y1, x2, y2)`` pixel edges: the exact mask's box, or a box-only object's box. ``packed``: the
    mask inside its box, ``numpy.packbits`` of the (y2 - y1, x2 - x1) bool crop, when it goes to a worker process
    (None when the mask is handed over in memory, or for a box-only object)."""

    category_id: int
    box: tuple[float, float, float, float]
    packed: bytes | None = None

    def crop_shape(self) -> tuple[int, int]:
        x1, y1, x2, y2 = (int(v) for v in self.box)
        return (y2 - y1, x2 - x1)


@dataclass(frozen=True)
class RenderJob:
    """What rendering one image's exports needs (picklable: it may go to a worker process)."""

    task_id: int
    name: str  # the image's file name in the flat export folders (``<task id>_<file name>``)
    height: int
    width: int
    objects: tuple[ExportObject, ...]
    formats: tuple[str, ...]
    tolerance_px: float
    stage: Path


@dataclass
class RenderedImage:
    """What rendering one image leaves for the writing phase (its VOC PNGs and YOLO label file are written)."""

    task_id: int
    coco_polygon: list[str] = field(default_factory=list)  # each object's segmentation, as JSON text
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (format, what) -> n


def pending_label_path(stage: Path, name: str) -> Path:
    """Where the YOLO label file of the image named ``name`` waits for its split (see :data:`PENDING_LABELS`)."""
    return stage / PENDING_LABELS / f"{Path(name).stem}.txt"


def render_image(job: RenderJob, crops: Sequence[np.ndarray | None] | None = None) -> RenderedImage:
    """Render one image's exports: write its VOC PNGs and its YOLO label file (pending) under ``job.stage``; return
    its coco-polygon segmentations. ``crops``: each object's bool mask inside its ``box`` (None: box-only) when they
    are in memory; else they are unpacked from the objects' ``packed``. Each mask is traced once for every format."""
    from batchlabel.formats.coco_polygon import coco_polygons_json
    from batchlabel.formats.polygon import join_rings, mask_to_polygon_parts, part_pixel_counts, part_ring
    from batchlabel.formats.voc import MAX_INDEX, encode_palette_png, paint_voc_object, voc_png_paths
    from batchlabel.formats.yolo import box_polygon, yolo_line

    rendered = RenderedImage(job.task_id)
    counts = rendered.counts
    want_polygons = "coco-polygon" in job.formats or "yolo" in job.formats
    yolo_lines: list[str] = []
    voc_maps = (np.zeros((job.height, job.width), np.uint8), np.zeros((job.height, job.width), np.uint8))
    painted = 0
    limit = max(job.width, job.height)
    for index, item in enumerate(job.objects):
        crop = crops[index] if crops is not None else _unpack(item)
        parts, rings, part_pixels = [], [], None
        x1, y1 = int(item.box[0]), int(item.box[1])
        if crop is not None and want_polygons:
            parts = mask_to_polygon_parts(crop, tolerance_px=job.tolerance_px, min_area_px=0, outline="edges")
            offset = np.array([x1, y1], dtype=np.float64)  # the crop's points -> the image's
            rings = [part_ring(part) + offset for part in parts]  # each part with its holes cut in
            if "yolo" in job.formats and len(parts) > 1:
                part_pixels = part_pixel_counts(crop, parts)
        box = box_polygon(item.box)
        if "coco-polygon" in job.formats:
            if rings or crop is None:
                rendered.coco_polygon.append(coco_polygons_json(rings, limit=limit))
            else:
                rendered.coco_polygon.append(json.dumps([box.reshape(-1).tolist()], separators=(",", ":")))
                counts["coco-polygon", "box_polygons"] += 1
            counts["coco-polygon", "objects"] += 1
        if "yolo" in job.formats:
            joined = join_rings(rings, part_pixels=part_pixels)
            if joined is None:
                yolo_lines.append(yolo_line(item.category_id - 1, box, job.width, job.height))
                counts["yolo", "box_polygons"] += 1
            else:
                yolo_lines.append(yolo_line(item.category_id - 1, joined.ring, job.width, job.height))
                if joined.left_out:
                    counts["yolo", "parts_left_out"] += len(joined.left_out)
            counts["yolo", "objects"] += 1
        if "voc" in job.formats:
            if crop is None:
                counts["voc", "box_only_not_painted"] += 1
            elif painted >= MAX_INDEX:
                counts["voc", "over_254_objects_not_painted"] += 1
            else:
                painted += 1
                paint_voc_object(*voc_maps, painted, crop, item.category_id, origin=(x1, y1))
    if "yolo" in job.formats:
        path = pending_label_path(job.stage, job.name)
        path.write_text("".join(f"{line}\n" for line in yolo_lines), encoding="utf-8")
    if "voc" in job.formats:
        for path, index_map in zip(voc_png_paths(job.stage / "voc", job.name), voc_maps, strict=True):
            path.write_bytes(encode_palette_png(index_map))
        counts["voc", "objects"] += painted
    return rendered


def _unpack(item: ExportObject) -> np.ndarray | None:
    if item.packed is None:
        return None
    height, width = item.crop_shape()
    bits = np.unpackbits(np.frombuffer(item.packed, dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).view(bool)


class ExportRenderer:
    """Renders every converted task's exports during the conversion pass (:func:`render_image`), here or in worker
    processes, and keeps what the writing phase needs in a spool file under ``work``.

    ``workers``: worker processes; ``None``: :func:`default_export_workers`, started once
    :data:`PARALLEL_EXPORT_MIN_IMAGES` tasks were rendered here. The output does not depend on where a task was
    rendered. Call :meth:`render` per task, :meth:`finish`, then :meth:`get` per task; :meth:`close` always.
    """

    def __init__(self, stage: Path, work: Path, formats: Sequence[str], *, tolerance_px: float,
                 workers: int | None = None) -> None:
        self.stage = stage
        self.formats = tuple(name for name in formats if name != "coco")
        self.tolerance_px = tolerance_px
        self._workers = default_export_workers() if workers is None else max(0, workers)
        self._start_after = PARALLEL_EXPORT_MIN_IMAGES if workers is None else 0
        if "yolo" in self.formats:
            (stage / PENDING_LABELS).mkdir(parents=True, exist_ok=True)
        if "voc" in self.formats:
            from batchlabel.formats.voc import voc_png_paths

            for folder in voc_png_paths(stage / "voc", "-"):
                folder.parent.mkdir(parents=True, exist_ok=True)
        self._spool = (work / "exports.spool").open("w+b")
        self._where: dict[int, tuple[int, int]] = {}  # task id -> (offset, length) in the spool
        self._names: dict[int, str] = {}
        self._pool: Any = None
        self._pending: deque[tuple[Any, RenderJob]] = deque()  # (future, its job) in submission order

    @property
    def active(self) -> bool:
        """Whether any format besides ``coco`` was asked for."""
        return bool(self.formats)

    def render(self, task_id: int, rel_path: str, height: int, width: int, objects: Sequence[Any]) -> None:
        """Render one converted task (``objects``: its :class:`~batchlabel.dataset.convert.CocoObject` values, their
        masks in memory)."""
        from batchlabel.formats.yolo import export_name

        name = export_name(task_id, rel_path)
        self._names[task_id] = name
        self._collect(block=False)
        if self._pool is None and self._workers and len(self._where) >= self._start_after:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: builds also run in a thread of `up`, and a forked child of a threaded process can
            # inherit a held lock
            self._pool = ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
        to_worker = self._pool is not None and len(self._pending) < 2 * self._workers
        items, crops = [], []
        for obj in objects:
            box = _exact_box(obj)
            crop = None
            if obj.mask is not None:
                x1, y1, x2, y2 = (int(v) for v in box)
                crop = obj.mask[y1:y2, x1:x2]
            items.append(ExportObject(obj.category_id, box,
                                      np.packbits(crop).tobytes() if to_worker and crop is not None else None))
            crops.append(crop)
        job = RenderJob(task_id, name, height, width, tuple(items), self.formats, self.tolerance_px, self.stage)
        if to_worker:
            from concurrent.futures.process import BrokenProcessPool

            try:
                self._pending.append((self._pool.submit(render_image, job), job))
                return
            except BrokenProcessPool:
                self._worker_lost()
        self._store(render_image(job, crops))

    def _collect(self, *, block: bool) -> None:
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        while self._pending and (block or self._pending[0][0].done()):
            future, job = self._pending.popleft()
            try:
                rendered = future.result()
            except (BrokenProcessPool, CancelledError):  # a worker was killed (out of memory?): rendered here
                self._worker_lost()
                rendered = render_image(job)  # its masks travel packed in the job
            self._store(rendered)

    def _worker_lost(self) -> None:
        """A worker process died: render everything from now on in this process."""
        if self._workers:
            log.warning("an export worker process died (killed, or out of memory?); the build goes on in this "
                        "process, more slowly")
        self._workers = 0
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _store(self, rendered: RenderedImage) -> None:
        data = pickle.dumps(rendered, protocol=pickle.HIGHEST_PROTOCOL)
        self._spool.seek(0, os.SEEK_END)
        self._where[rendered.task_id] = (self._spool.tell(), len(data))
        self._spool.write(data)

    def finish(self) -> None:
        """Wait for every task in the workers; stop them."""
        try:
            self._collect(block=True)
        finally:
            self.shutdown()

    def get(self, task_id: int) -> tuple[str, RenderedImage]:
        """The export name and what :func:`render_image` returned for a rendered task."""
        offset, length = self._where[task_id]
        self._spool.seek(offset)
        return self._names[task_id], pickle.loads(self._spool.read(length))  # noqa: S301 - this build's own spool

    def discard_all_but(self, kept: set[int]) -> None:
        """Remove the files rendered for tasks not in ``kept`` (not in the dataset after all: the same image twice)."""
        from batchlabel.formats.voc import voc_png_paths

        for task_id, name in self._names.items():
            if task_id in kept:
                continue
            paths = [pending_label_path(self.stage, name)] if "yolo" in self.formats else []
            paths += list(voc_png_paths(self.stage / "voc", name)) if "voc" in self.formats else []
            for path in paths:
                path.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Stop the worker processes (also after a failure; what they were rendering is dropped)."""
        if self._pool is not None:
            for future, _job in self._pending:
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self.shutdown()
        self._spool.close()


def _exact_box(obj: Any) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` of an object's exact mask (its COCO ``bbox`` when the segmentation is that mask's RLE;
    with ``--segmentation polygon`` the bbox is the polygons', so the mask is measured), or a box-only object's box."""
    from batchlabel.formats.box import box_xyxy_from_xywh, mask_to_box_xyxy

    if obj.mask is None or isinstance(obj.segmentation, dict):
        return box_xyxy_from_xywh(obj.bbox)
    return mask_to_box_xyxy(obj.mask) or (0.0, 0.0, 0.0, 0.0)


class ExportWriters:
    """The writing phase of the non-COCO-RLE formats, under ``stage`` (the build's folder before it is moved to
    ``out``): call :meth:`image_targets` for every image (in image-id order), then :meth:`add_image` for every image
    (in the same order), then :meth:`close`."""

    def __init__(
        self,
        stage: Path,
        out: Path,
        renderer: ExportRenderer,
        labels: Sequence[str],
        *,
        coco_info: dict[str, Any],
    ) -> None:
        from batchlabel.formats.coco import CocoWriter, categories_for
        from batchlabel.formats.voc import VocWriter
        from batchlabel.formats.yolo import YoloWriter

        self.stage, self.out, self.renderer = stage, out, renderer
        formats = renderer.formats
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in formats}
        self.coco_polygon = None
        if "coco-polygon" in formats:
            info = {**coco_info, "segmentation": "polygon"}
            self.coco_polygon = {
                name: CocoWriter(stage / "annotations" / f"{name}_polygon.json", categories=categories_for(labels),
                                 info=info)
                for name in ("all", "train", "val")
            }
        self.yolo = YoloWriter(stage / "yolo", labels) if "yolo" in formats else None
        self.voc = VocWriter(stage / "voc", labels) if "voc" in formats else None
        self._written: set[int] = set()

    def image_targets(self, image: dict[str, Any], split: str, task_id: int) -> list[Path]:
        """Where this image's file goes in each format (``image``: its COCO images entry); also writes the entry
        into the coco-polygon files."""
        from batchlabel.formats.yolo import export_name

        targets: list[Path] = []
        if self.coco_polygon is not None:
            self.coco_polygon["all"].add_image(image)
            self.coco_polygon[split].add_image(image)
        name = export_name(task_id, image["file_name"])
        if self.yolo is not None:
            targets.append(self.yolo.image_path(split, name))
        if self.voc is not None:
            targets.append(self.voc.image_path(name))
        return targets

    def add_image(self, split: str, task_id: int, annotations: Sequence[dict[str, Any]]) -> None:
        """Write one rendered image's entries (``annotations``: its COCO annotations, with ids, in rendering order)."""
        from batchlabel.formats.coco import encode_entry

        name, rendered = self.renderer.get(task_id)
        self._written.add(task_id)
        for (format_name, what), number in rendered.counts.items():
            self.counts[format_name][what] += number
        if self.coco_polygon is not None:
            for annotation, segmentation in zip(annotations, rendered.coco_polygon, strict=True):
                # the RLE file's entry with the polygons in place of the RLE (the same keys, in the same order)
                encoded = encode_entry({**annotation, "segmentation": None}).replace(
                    '"segmentation":null', f'"segmentation":{segmentation}', 1)
                self.coco_polygon["all"].add_annotation(None, encoded=encoded)
                self.coco_polygon[split].add_annotation(None, encoded=encoded)
        if self.yolo is not None:
            os.replace(pending_label_path(self.stage, name), self.yolo.label_path(split, name))
            self.counts["yolo"]["images"] += 1
        if self.voc is not None:
            self.voc.add_image(split, name)
            self.counts["voc"]["images"] += 1

    def close(self) -> dict[str, dict[str, Any]]:
        """Finish every file, remove what was rendered for images left out; returns the summary per format (paths
        relative to the dataset folder, counts)."""
        self.renderer.discard_all_but(self._written)
        summary: dict[str, dict[str, Any]] = {}
        if self.coco_polygon is not None:
            for writer in self.coco_polygon.values():
                writer.close()
            summary["coco-polygon"] = {"files": [f"annotations/{n}_polygon.json" for n in ("all", "train", "val")],
                                       **self.counts["coco-polygon"]}
        if self.yolo is not None:
            self.yolo.write_data_yaml(self.out / "yolo")
            (self.stage / PENDING_LABELS).rmdir()
            summary["yolo"] = {"data_yaml": "yolo/data.yaml", **self.counts["yolo"]}
        if self.voc is not None:
            self.voc.close()
            summary["voc"] = {"root": "voc", **self.counts["voc"]}
        return summary
