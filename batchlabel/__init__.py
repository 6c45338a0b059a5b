"""batchlabel: folder of images -> SAM pre-annotated Label Studio project -> COCO RLE instance-segmentation dataset."""

__version__ = "0.1.0"
