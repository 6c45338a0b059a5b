"""``build-dataset --mask-boxes``: box-only objects become masks through SAM box prompts on the embedding store.

Each image is embedded once (read from the store when ``encode``/``run``/``serve`` already did it; otherwise encoded
now and stored), then all of its boxes are decoded in one batch. Boxes are XYXY pixels of the oriented image; the
masks come back (H, W) bool at the same size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from batchlabel.dataset.convert import BoxMasker
from batchlabel.dataset.ls_export import DatasetError

log = logging.getLogger(__name__)


def sam_box_masker(config: Any, *, model: Any | None = None) -> BoxMasker:
    """A :data:`~.convert.BoxMasker` on the config's model and embedding store (``model``: an already loaded one).

    Raises :class:`DatasetError` when the model weights are unavailable.
    """
    from batchlabel.infer.decoder import Prompt
    from batchlabel.infer.engine import build_engine
    from batchlabel.infer.images import ImageLoadError, load_image
    from batchlabel.infer.weights import WeightsUnavailableError

    try:
        engine = build_engine(config.model, config.cache, model=model, batched=False)
    except WeightsUnavailableError as error:
        raise DatasetError(f"--mask-boxes needs the model weights: {error}") from None
    encoder, decoder = engine.encoder, engine.decoder
    assert decoder is not None  # built with the batch decoder
    counts = {"images": 0, "boxes": 0}

    def masker(path: Path, size_hw: tuple[int, int], boxes: np.ndarray) -> Sequence[np.ndarray]:
        try:
            loaded = load_image(path)
        except ImageLoadError as error:
            raise DatasetError(f"--mask-boxes: cannot load {path}: {error}") from None
        embedding = encoder.encode_image(loaded)
        if tuple(embedding.original_size) != tuple(size_hw):
            raise DatasetError(f"--mask-boxes: {path} is {embedding.original_size} (h, w) after EXIF orientation "
                               f"but was labeled at {size_hw}")
        prompts = [Prompt(points=None, point_labels=None, box=np.asarray(box, dtype=np.float32), mask_logits=None)
                   for box in np.asarray(boxes, dtype=np.float64)]
        decoded = decoder.decode_many(embedding, prompts)
        counts["images"] += 1
        counts["boxes"] += len(prompts)
        log.debug("--mask-boxes: %d boxes on %s (%d images so far)", len(prompts), path, counts["images"])
        return [result.masks[0] for result in decoded]

    return masker
