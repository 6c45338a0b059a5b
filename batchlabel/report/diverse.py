"""What to label first before a model exists: unreviewed tasks in greedy k-center order over their cached embeddings.

Each image becomes one vector: its encoder embedding ``(1, C, 64, 64)`` (``C`` = 256 for SAM v1 models) averaged
over the grid cells that hold the image (the padding below and right of the resized image is left out), then
L2-normalised: ``(C,)`` float32 (:func:`pooled_embedding`). Greedy k-center (farthest-point traversal,
:func:`k_center_order`) starts from the image farthest from the mean and then, again and again, takes the image
farthest from every image taken so far, so the first N reviewed images cover the data's variety instead of N
near-duplicates.

Nothing is encoded here: embeddings are read from the store (:class:`batchlabel.infer.store.EmbeddingStore`) by the
image's sha256: the task's ``meta.sha256`` (every task batchlabel creates carries it), else the ingestion journal's
record of the file, else the file under ``storage.root`` hashed. The store may hold several models' embeddings; the
model id whose embeddings cover the most of the unreviewed images is used (ties: the configured ``model.name``,
then the first id in sorted order). Images without an embedding of that model are listed after the ordered ones,
in task-id order, and counted.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.dataset.ls_export import DatasetError, image_rel_path, select_annotation
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.store import EmbeddingStore
from batchlabel.report.routing import task_url

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def pooled_embedding(embedding: ImageEmbedding) -> np.ndarray:
    """``(C,)`` float32, unit length: the features' mean over the grid cells covering the image (not the padding).

    The encoder sees the image resized to ``input_size`` (longest side = the canvas side) and padded bottom/right to
    a square canvas; grid cell ``(i, j)`` of the ``(1, C, H, W)`` features covers canvas rows ``i * side / H`` on.
    A zero vector (all features 0) stays zero.
    """
    features = np.asarray(embedding.features, dtype=np.float32)[0]  # (C, H, W)
    grid_h, grid_w = features.shape[1:]
    input_h, input_w = embedding.input_size
    side = max(input_h, input_w, 1)
    rows = min(grid_h, max(1, math.ceil(grid_h * input_h / side)))
    cols = min(grid_w, max(1, math.ceil(grid_w * input_w / side)))
    pooled = features[:, :rows, :cols].mean(axis=(1, 2))
    norm = float(np.linalg.norm(pooled))
    return pooled / norm if norm > 0 else pooled


def k_center_order(vectors: np.ndarray, count: int) -> list[tuple[int, float | None]]:
    """Greedy k-center: ``count`` row indices of ``vectors`` ``(N, D)``, each the row farthest from those before it.

    The first is the row farthest from the mean of all rows; each next one maximises the Euclidean distance to its
    nearest already chosen row. Ties go to the lowest index, so the order is deterministic. Returns ``(index,
    distance)`` pairs, ``distance`` being that nearest-chosen distance (None for the first): the radius within which
    the chosen rows cover the rest, non-increasing. At most ``N`` pairs; ``count <= 0`` gives none.
    """
    points = np.asarray(vectors, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {points.shape}")
    total = points.shape[0]
    if count <= 0 or total == 0:
        return []
    squared = np.einsum("ij,ij->i", points, points)

    def distances_to(row: int) -> np.ndarray:  # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one product, no (N, D) copy
        return np.sqrt(np.maximum(squared + squared[row] - 2.0 * (points @ points[row]), 0.0))

    first = int(np.argmax(np.linalg.norm(points - points.mean(axis=0), axis=1)))  # argmax: lowest index on ties
    order: list[tuple[int, float | None]] = [(first, None)]
    nearest = distances_to(first)
    nearest[first] = -np.inf
    for _ in range(min(count, total) - 1):
        chosen = int(np.argmax(nearest))
        order.append((chosen, float(nearest[chosen])))
        nearest = np.minimum(nearest, distances_to(chosen))  # chosen rows stay -inf
        nearest[chosen] = -np.inf
    return order


@dataclass(frozen=True)
class UnreviewedImage:
    """An unreviewed task's image: ``rel_path`` under ``storage.root`` (None for other URLs), the ``meta.sha256``
    batchlabel gave the task (None when absent), and the task's ``data`` (to rewrite its rank in the Data Manager)."""

    task_id: int
    rel_path: str | None
    meta_sha256: str | None
    data: Mapping[str, Any]


def unreviewed_image(task: Mapping[str, Any], image_key: str) -> UnreviewedImage | None:
    """The task's image when the task is unreviewed (no annotation the dataset build would use), else None.

    A malformed task is None too: the report's pass names it as a failure.
    """
    task_id = task.get("id")
    if not isinstance(task_id, int) or isinstance(task_id, bool):
        return None
    try:
        if select_annotation(dict(task)) is not None:
            return None
    except DatasetError:
        return None
    try:
        rel_path: str | None = image_rel_path(dict(task), image_key)
    except DatasetError:
        rel_path = None
    meta = task.get("meta")
    sha = meta.get("sha256") if isinstance(meta, Mapping) else None
    data = task.get("data")
    return UnreviewedImage(task_id, rel_path, sha if isinstance(sha, str) and _SHA256.match(sha) else None,
                           dict(data) if isinstance(data, Mapping) else {})


def collect_unreviewed(tasks: Iterable[dict[str, Any]], image_key: str,
                       into: list[UnreviewedImage]) -> Iterator[dict[str, Any]]:
    """Pass ``tasks`` through unchanged, appending each unreviewed task's image to ``into`` (one pass, no copy)."""
    for task in tasks:
        image = unreviewed_image(task, image_key)
        if image is not None:
            into.append(image)
        yield task


class ImageHashes:
    """An unreviewed image's sha256: the task's ``meta.sha256``, else the journal's, else the file's, else None.

    Args:
        root: ``storage.root`` (files are read only inside it).
        journal_path: the ingestion journal (``config.journal_path``); read only when the file exists.
    """

    def __init__(self, root: Path, journal_path: Path | None) -> None:
        self.root = root
        self._journal: Any = None
        if journal_path is not None and journal_path.is_file():
            from batchlabel.ingest.journal import Journal, JournalCorruptError

            try:
                self._journal = Journal(journal_path)
            except JournalCorruptError as error:
                log.warning("%s; image hashes are read from the files instead", error)

    def sha256(self, image: UnreviewedImage) -> str | None:
        if image.meta_sha256 is not None:
            return image.meta_sha256
        if image.rel_path is None:
            return None
        if self._journal is not None:
            record = self._journal.get(image.rel_path)
            if record is not None and record.sha256 and _SHA256.match(record.sha256):
                return str(record.sha256)
        from batchlabel.infer.confine import PathConfinementError, confine_relative
        from batchlabel.infer.images import file_sha256

        try:
            return file_sha256(confine_relative(image.rel_path, self.root))
        except (PathConfinementError, OSError) as error:
            log.debug("task %s: cannot hash %s (%s)", image.task_id, image.rel_path, error)
            return None

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


def choose_model_id(store: EmbeddingStore, hashes: Sequence[str], *, preferred_name: str) -> str | None:
    """The store's model id holding embeddings of the most of ``hashes`` (ties: ``<preferred_name>@...``, then the
    first in sorted order); None when no model holds any."""
    best: tuple[int, bool] = (0, False)
    chosen = None
    for model_id in store.model_ids():
        key = (sum(store.contains(sha, model_id) for sha in hashes), model_id.split("@", 1)[0] == preferred_name)
        if key[0] > 0 and key > best:
            best, chosen = key, model_id
    return chosen


def diverse_first(images: Sequence[UnreviewedImage], count: int, *, store: EmbeddingStore, hashes: ImageHashes,
                  preferred_model: str, label_studio_url: str | None, project_id: int | None) -> dict[str, Any]:
    """The report's ``diverse`` section: the first ``count`` unreviewed tasks in k-center order.

    Returns ``{"model_id", "unreviewed", "with_embedding", "without_embedding", "tasks": [{"rank" (1-based),
    "task_id", "distance" (to the nearest task ranked before it, pooled unit vectors; None for the first and for
    tasks without an embedding), "embedding" (bool), "url"}]}``; tasks without an embedding come after the others.
    """
    by_task = sorted(images, key=lambda image: image.task_id)
    shas = {image.task_id: hashes.sha256(image) for image in by_task}
    model_id = choose_model_id(store, [sha for sha in shas.values() if sha is not None],
                               preferred_name=preferred_model)
    embedded: list[UnreviewedImage] = []
    vectors: list[np.ndarray] = []
    for image in by_task:
        sha = shas[image.task_id]
        embedding = store.get(sha, model_id) if sha is not None and model_id is not None else None
        if embedding is None:
            continue
        embedded.append(image)
        vectors.append(pooled_embedding(embedding))
    embedded_ids = {image.task_id for image in embedded}
    without = [image for image in by_task if image.task_id not in embedded_ids]
    order = k_center_order(np.stack(vectors), count) if vectors else []
    listed: list[tuple[UnreviewedImage, float | None, bool]] = [(embedded[i], d, True) for i, d in order]
    listed += [(image, None, False) for image in without[: max(count - len(listed), 0)]]
    if without:
        log.info("%d unreviewed task(s) have no embedding of %s in the store; they are listed last", len(without),
                 model_id or "any model")
    return {
        "model_id": model_id,
        "unreviewed": len(by_task),
        "with_embedding": len(embedded),
        "without_embedding": len(without),
        "tasks": [
            {"rank": rank, "task_id": image.task_id, "distance": None if distance is None else round(distance, 4),
             "embedding": has_embedding, "url": task_url(label_studio_url, project_id, image.task_id)}
            for rank, (image, distance, has_embedding) in enumerate(listed, start=1)
        ],
    }
