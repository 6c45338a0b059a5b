"""SAM 2.1 and HQ-SAM through :func:`build_engine`: the same :class:`BatchEncoder` (store hit on the second pass,
named extras stored, features equal to the family's own ``encode``), and :class:`FamilyDecoder` behind the decoder
interface every caller uses (``decode_many`` in one point batch equals one-by-one ``decode``; refinement with the
previous mask; segment-everything; ``--mask-boxes``). Tiny random configs at the official 1024 px input."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from batchlabel.config import CacheConfig, ModelConfig
from batchlabel.infer.decoder import Prompt
from batchlabel.infer.engine import Engine, build_engine
from batchlabel.infer.families.decoder import FamilyDecoder
from batchlabel.infer.images import load_image


@pytest.fixture(scope="module", params=["sam2.1_hiera_tiny", "sam_hq"])
def engine_and_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Path]:
    from skimage import data

    folder = tmp_path_factory.mktemp("family-engine")
    image = folder / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(image)
    model_config = ModelConfig(name=request.param, checkpoint="random", allow_random_weights=True, device="cpu")
    return build_engine(model_config, CacheConfig(dir=folder / "cache")), image


def test_encoder_stores_the_family_features(engine_and_image: tuple[Engine, Path]) -> None:
    engine, image = engine_and_image
    (first,) = engine.encoder.encode_files([image])
    (second,) = engine.encoder.encode_files([image])
    assert first.ok and not first.cached and second.cached
    assert first.embedding is not None and second.embedding is not None
    assert set(second.embedding.extras) == set(engine.model.feature_names[1:])
    direct = engine.model.encode(load_image(image))
    assert direct.input_size == second.embedding.input_size
    for name, array in {"image_embed": direct.features, **direct.extras}.items():
        stored = second.embedding.features if name == "image_embed" else second.embedding.extras[name]
        np.testing.assert_allclose(stored.astype(np.float32), array, rtol=1e-2, atol=1e-3)


def test_decoder_interface(engine_and_image: tuple[Engine, Path]) -> None:
    from batchlabel.infer.everything import segment_everything

    engine, image = engine_and_image
    assert isinstance(engine.decoder, FamilyDecoder)
    embedding = engine.encoder.encode_image(load_image(image))
    clicks = [Prompt(points=np.array([[100.0 + 60 * i, 150.0]]), point_labels=np.array([1])) for i in range(3)]
    batched = engine.decoder.decode_many(embedding, clicks)
    for prompt, together in zip(clicks, batched, strict=True):
        alone = engine.model.decode(embedding, prompt)
        assert together.masks.shape == (1, 300, 451)
        assert (together.masks == alone.masks).mean() > 0.999
        np.testing.assert_allclose(together.scores, alone.scores, atol=1e-5)
    three = engine.decoder.decode(embedding, clicks[0], multimask=True)
    assert three.masks.shape == (3, 300, 451) and np.all(np.diff(three.scores) <= 0)
    refined = engine.decoder.decode(embedding, Prompt(points=np.array([[100.0, 150.0], [300.0, 60.0]]),
                                                      point_labels=np.array([1, 0]),
                                                      mask_logits=three.low_res_logits[:1]))
    assert refined.masks.shape == (1, 300, 451) and refined.low_res_logits.shape == (1, 256, 256)
    found = segment_everything(engine.decoder, embedding, points_per_side=2, pred_iou_thresh=0.0,
                               stability_score_thresh=0.0, min_area_px=0)
    assert found and all(obj.mask.shape == (300, 451) for obj in found)


def test_mask_boxes(engine_and_image: tuple[Engine, Path]) -> None:
    from batchlabel.dataset.mask_boxes import sam_box_masker

    engine, image = engine_and_image
    config = SimpleNamespace(model=ModelConfig(name=engine.model.name, checkpoint="random", allow_random_weights=True,
                                               device="cpu"), cache=CacheConfig(dir=engine.store.root.parent))
    masker = sam_box_masker(config, model=engine.model)
    masks = masker(image, (300, 451), np.array([[20.0, 0.0, 400.0, 299.0], [10.0, 10.0, 80.0, 90.0]]))
    assert [mask.shape for mask in masks] == [(300, 451), (300, 451)]
