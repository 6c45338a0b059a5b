"""Dataset formats and mask codecs: one module per format, converters in mirrored pairs (``mask_to_X`` / ``X_to_mask``).

- :mod:`.yolo`: Ultralytics' segment layout (``images/``, ``labels/``, ``data.yaml``), one polygon line per object.

Masks are ``(H, W)`` bool arrays in image space (after EXIF orientation).
"""
