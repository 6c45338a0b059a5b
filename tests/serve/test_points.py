"""Point2Label with positive and negative clicks (random-weight MobileSAM: masks are meaningless but deterministic)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from batchlabel.serve.app import create_app
from tests.serve.conftest import brush_masks, point_context, predict_body, save_image

pytestmark = pytest.mark.slow


def test_negative_point_changes_the_mask_and_predicted_points_are_ignored(
    offline_config: Any, random_mobile_sam: Any, chelsea: np.ndarray
) -> None:
    config = offline_config(random_mobile_sam, preannotate={"outputs": ["brush", "polygon", "rectangle"]})
    save_image(chelsea, config.storage.root / "chelsea.jpg")
    url = "/data/local-files/?d=chelsea.jpg"
    size = chelsea.shape[:2]
    positive = point_context(200, 150, size)
    negative = point_context(260, 120, size, positive=False)
    predicted = point_context(30, 30, size, origin="prediction")
    with TestClient(create_app(config, model=random_mobile_sam)) as client:
        alone = client.post("/predict", json=predict_body(url, [positive]))
        both = client.post("/predict", json=predict_body(url, [predicted, positive, negative]))
        with_noise = client.post("/predict", json=predict_body(url, [predicted, positive]))
    assert alone.status_code == both.status_code == with_noise.status_code == 200, both.text
    mask_alone = brush_masks(alone.json()["results"][0]["result"])
    mask_both = brush_masks(both.json()["results"][0]["result"])
    assert len(mask_alone) == len(mask_both) == 1
    assert not np.array_equal(mask_alone[0], mask_both[0])
    # the predicted keypoint is not part of the prompt: same answer as the positive click alone
    assert np.array_equal(brush_masks(with_noise.json()["results"][0]["result"])[0], mask_alone[0])
    kinds = {item["type"] for item in both.json()["results"][0]["result"]}
    assert "brushlabels" in kinds and kinds <= {"brushlabels", "polygonlabels", "rectanglelabels"}
