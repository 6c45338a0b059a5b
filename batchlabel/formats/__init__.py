"""Mask codecs and dataset formats: one module per format, converters in mirrored pairs (``mask_to_X`` / ``X_to_mask``).

Codecs (one mask <-> one encoding):
- :mod:`.brush`: Label Studio brush RLE (bit-exact with ``label_studio_sdk.converter.brush``).
- :mod:`.polygon`: polygons with holes and several parts, pixel tolerance, Label Studio percent points, zero-width
  cuts that join holes and parts into one ring.
- :mod:`.box`: XYXY pixel-edge boxes, XYWH, Label Studio percent rectangles.
- :mod:`.coco_rle`: COCO compressed RLE (pycocotools).

Dataset formats (the files a trainer reads; writers need only numpy and files):
- :mod:`.coco`: the streamed COCO JSON writer; :mod:`.coco_polygon`: COCO polygon segmentation.
- :mod:`.yolo`: Ultralytics' segment layout (``images/``, ``labels/``, ``data.yaml``), one polygon line per object.
- :mod:`.voc`: Pascal VOC ``SegmentationClass`` / ``SegmentationObject`` palette PNGs.

Masks are ``(H, W)`` bool arrays in image space (after EXIF orientation). Imports only numpy, OpenCV, pycocotools,
Pillow and PyYAML: no other batchlabel package (``infer`` and ``formats`` are independent layers).
"""
