"""The real YOLO11n COCO weights for the training tests (the detect tests' fixture)."""

from tests.annotate.conftest import yolo11n

__all__ = ["yolo11n"]
