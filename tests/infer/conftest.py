"""Fixtures for tests/infer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infer.image_zoo import ImageZoo, make_image_zoo


@pytest.fixture
def image_zoo(tmp_path: Path) -> ImageZoo:
    return make_image_zoo(tmp_path / "images")
