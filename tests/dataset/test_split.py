"""split_images: seeded, class-aware, disjoint, independent of input order."""

from __future__ import annotations

import pytest

from batchlabel.dataset.split import split_images, val_size


@pytest.mark.parametrize(("n", "fraction", "expected"), [
    (10, 0.2, 2), (2, 0.2, 1), (1, 0.5, 0), (5, 0.0, 0), (100, 0.95, 95), (3, 0.9, 2),
])
def test_val_size(n: int, fraction: float, expected: int) -> None:
    assert val_size(n, fraction) == expected


def test_split_is_disjoint_complete_seeded_and_order_independent() -> None:
    images = {i: {1 + i % 3} if i % 7 else set() for i in range(1, 101)}
    split = split_images(images, val_fraction=0.2, seed=3)
    assert len(split.val) == 20 and len(split.train) == 80
    assert not set(split.val) & set(split.train)
    assert set(split.val) | set(split.train) == set(images)
    reordered = dict(sorted(images.items(), reverse=True))
    assert split_images(reordered, val_fraction=0.2, seed=3) == split
    assert split_images(images, val_fraction=0.2, seed=4) != split


def test_every_class_with_two_images_is_on_both_sides() -> None:
    images = {i: {1} for i in range(1, 41)}
    images.update({41: {2}, 42: {2}, 43: {3, 1}, 44: {3}, 45: {4}})
    split = split_images(images, val_fraction=0.1, seed=0)
    for category in (1, 2, 3):
        assert any(category in images[i] for i in split.val), category
        assert any(category in images[i] for i in split.train), category
    assert any(4 in images[i] for i in split.train)  # a single image stays in train


def test_val_fraction_zero_puts_everything_in_train() -> None:
    split = split_images({1: {1}, 2: {1}}, val_fraction=0, seed=0)
    assert split.train == (1, 2) and split.val == ()
