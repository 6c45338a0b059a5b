"""Seeded, class-aware train/val split of a dataset's images.

The split depends only on (image id -> category ids, val fraction, seed): never on the order images arrive in, so a
live project and a JSON export of it split the same way. Train and val are disjoint; val is never train.

Method (a small form of iterative stratification): images are visited rarest class first (a seeded shuffle breaks
ties); each goes to the side whose per-class quota is least filled, relative to the wanted fraction, while the total
val size is exactly ``round(val_fraction * n)`` (at least 1 when ``val_fraction > 0`` and there are 2 or more images).
A class with two or more images therefore gets at least one image on each side.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """Image ids of each side, sorted ascending."""

    train: tuple[int, ...]
    val: tuple[int, ...]


def val_size(n_images: int, val_fraction: float) -> int:
    """How many of ``n_images`` go to val: ``round(fraction * n)``, at least 1 and at most ``n - 1`` when possible."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 or n_images < 2:
        return 0
    return min(max(round(val_fraction * n_images), 1), n_images - 1)


def split_images(image_classes: Mapping[int, Set[int]], *, val_fraction: float, seed: int) -> Split:
    """Split images into train and val.

    Args:
        image_classes: image id -> the category ids of its objects (empty for a negative image).
        val_fraction: wanted fraction of images in val, in ``[0, 1)``; 0 puts everything in train.
        seed: the shuffle seed; the same inputs and seed always give the same split.
    """
    ids = sorted(image_classes)
    n_val = val_size(len(ids), val_fraction)
    if n_val == 0:
        return Split(train=tuple(ids), val=())
    n_train = len(ids) - n_val
    class_counts: Counter[int] = Counter()
    for image_id in ids:
        class_counts.update(set(image_classes[image_id]))

    rng = random.Random(seed)
    order = ids[:]
    rng.shuffle(order)
    # rarest class first; images with no objects last (they carry no class information)
    rank = {image_id: position for position, image_id in enumerate(order)}

    def rarity(image_id: int) -> tuple[int, int]:
        classes = image_classes[image_id]
        rarest = min((class_counts[c] for c in classes), default=len(ids) + 1)
        return rarest, rank[image_id]

    order.sort(key=rarity)

    val_counts: Counter[int] = Counter()
    train_counts: Counter[int] = Counter()
    val: list[int] = []
    train: list[int] = []
    for image_id in order:
        classes = set(image_classes[image_id])
        if len(val) >= n_val:
            side = "train"
        elif len(train) >= n_train:
            side = "val"
        elif classes:
            # how far each side is below its quota, relative to the quota (1.0 = nothing yet, <= 0 = full)
            val_need = sum(1 - val_counts[c] / (val_fraction * class_counts[c]) for c in classes)
            train_need = sum(1 - train_counts[c] / ((1 - val_fraction) * class_counts[c]) for c in classes)
            side = "val" if val_need > train_need else "train"
        else:
            # negative images: fill val at the rate still missing
            missing_val = n_val - len(val)
            remaining = len(order) - len(val) - len(train)
            side = "val" if rng.random() < missing_val / remaining else "train"
        if side == "val":
            val.append(image_id)
            val_counts.update(classes)
        else:
            train.append(image_id)
            train_counts.update(classes)
    return Split(train=tuple(sorted(train)), val=tuple(sorted(val)))
