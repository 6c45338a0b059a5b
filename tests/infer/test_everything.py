"""batchlabel.infer.everything on a random-weight SAM decoder with a random embedding (no encoder needed).

Random weights give noisy masks (stability scores near 0), so the comparison with
``SamAutomaticMaskGenerator`` disables the stability filter and NMS: both must then return the same masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry

from batchlabel.infer.decoder import MaskDecoder
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.everything import ObjectMask, segment_everything

ORIGINAL_SIZE = (300, 451)  # non-square, like skimage.data.chelsea()
INPUT_SIZE = (681, 1024)
LOOSE = {"pred_iou_thresh": -100.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


@pytest.fixture(scope="module")
def sam() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return sam_model_registry["vit_b"]().eval()


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn((1, 256, 64, 64), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def embedding(features: torch.Tensor) -> ImageEmbedding:
    return ImageEmbedding(features.numpy().copy(), ORIGINAL_SIZE, INPUT_SIZE, "sam_vit_b@random", "fp32", "e" * 64)


@pytest.fixture(scope="module")
def decoder(sam: torch.nn.Module) -> MaskDecoder:
    return MaskDecoder(sam, input_size=1024)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_same_masks_as_sam_automatic_mask_generator(
    sam: torch.nn.Module, features: torch.Tensor, decoder: MaskDecoder, embedding: ImageEmbedding
) -> None:
    class FedPredictor(SamPredictor):
        """SamPredictor whose set_image takes the precomputed features instead of running the encoder."""

        def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
            self.features, self.original_size, self.input_size = features, ORIGINAL_SIZE, INPUT_SIZE
            self.is_image_set = True

    generator = SamAutomaticMaskGenerator(sam, points_per_side=3, output_mode="binary_mask", **LOOSE)
    generator.predictor = FedPredictor(sam)
    reference = [r for r in generator.generate(np.zeros((*ORIGINAL_SIZE, 3), np.uint8)) if r["area"] > 0]
    ours = segment_everything(decoder, embedding, points_per_side=3, min_area_px=0, max_masks=100, **LOOSE)
    assert len(ours) == len(reference) > 5
    reference_scores = sorted((r["predicted_iou"] for r in reference), reverse=True)
    np.testing.assert_allclose([m.score for m in ours], reference_scores, atol=1e-4)
    for found in ours:
        assert max(iou(found.mask, r["segmentation"]) for r in reference) >= 0.99


def test_results_are_filtered_sorted_and_deterministic(decoder: MaskDecoder, embedding: ImageEmbedding) -> None:
    kwargs = {"points_per_side": 3, "points_per_batch": 4, "min_area_px": 500, "max_masks": 4, **LOOSE}
    first = segment_everything(decoder, embedding, **kwargs)
    again = segment_everything(decoder, embedding, **kwargs)
    assert 0 < len(first) <= 4
    scores = [m.score for m in first]
    assert scores == sorted(scores, reverse=True)
    for found, repeat in zip(first, again, strict=True):
        assert isinstance(found, ObjectMask)
        assert found.mask.shape == ORIGINAL_SIZE and found.mask.dtype == bool
        assert found.area_px >= 500
        assert np.array_equal(found.mask, repeat.mask) and found.score == repeat.score
        x1, y1, x2, y2 = (int(v) for v in found.box_xyxy)
        assert found.mask[y1:y2, x1:x2].sum() == found.area_px
        assert found.mask[y1, x1:x2].any() and found.mask[y2 - 1, x1:x2].any()
        assert found.mask[y1:y2, x1].any() and found.mask[y1:y2, x2 - 1].any()


def test_thresholds_and_nms(decoder: MaskDecoder, embedding: ImageEmbedding) -> None:
    everything = segment_everything(decoder, embedding, points_per_side=3, min_area_px=0, max_masks=100, **LOOSE)
    median_score = float(np.median([m.score for m in everything]))
    strict = segment_everything(
        decoder,
        embedding,
        points_per_side=3,
        min_area_px=0,
        max_masks=100,
        pred_iou_thresh=median_score,
        stability_score_thresh=0.0,
        box_nms_thresh=0.5,
    )
    assert 0 < len(strict) < len(everything)
    assert all(m.score > median_score for m in strict)
    boxes = torch.tensor([m.box_xyxy for m in strict])
    from torchvision.ops import box_iou

    overlaps = box_iou(boxes, boxes) - torch.eye(len(strict))
    assert float(overlaps.max()) <= 0.5 + 1e-6
    assert segment_everything(decoder, embedding, points_per_side=2, pred_iou_thresh=10.0) == []


def test_box_only_model_is_refused(sam: torch.nn.Module, embedding: ImageEmbedding) -> None:
    box_only = MaskDecoder(sam, input_size=1024, prompt_kinds=("box",))
    with pytest.raises(ValueError, match="does not support point prompts"):
        segment_everything(box_only, embedding, points_per_side=2)


def test_rle_of_masks_round_trips(decoder: MaskDecoder, embedding: ImageEmbedding) -> None:
    """Masks are plain C-contiguous-able bool arrays that pycocotools can encode (what the dataset stage does)."""
    found = segment_everything(decoder, embedding, points_per_side=2, min_area_px=0, **LOOSE)
    assert found
    rle = mask_utils.encode(np.asfortranarray(found[0].mask.astype(np.uint8)))
    assert int(mask_utils.area(rle)) == found[0].area_px
