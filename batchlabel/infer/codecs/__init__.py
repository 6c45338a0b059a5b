"""Mask codecs: one module per format, converters in mirrored pairs (``mask_to_X`` / ``X_to_mask``).

- :mod:`.brush`: Label Studio brush RLE (bit-exact with ``label_studio_sdk.converter.brush``).
- :mod:`.polygon`: polygons with holes and several parts, pixel tolerance, Label Studio percent points.
- :mod:`.box`: XYXY pixel-edge boxes, XYWH, Label Studio percent rectangles.
- :mod:`.coco_rle`: COCO compressed RLE (pycocotools).

Masks are ``(H, W)`` bool arrays in image space (after EXIF orientation).
"""
