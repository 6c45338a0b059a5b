"""The backend app in process (no Label Studio): protocol, Bbox2Label with LiteMedSAM's real weights, the store,
errors as 4xx, basic auth, size limits, EXIF orientation."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from batchlabel.serve.app import create_app
from tests.serve.conftest import CAT_BOX, box_context, brush_masks, iou, point_context, predict_body, save_image

pytestmark = pytest.mark.slow

CAT_URL = "/data/local-files/?d=cats/chelsea.jpg"


@pytest.fixture
def cat_config(offline_config: Any, litemedsam: Any, chelsea: np.ndarray) -> Any:
    config = offline_config(litemedsam, preannotate={"outputs": ["brush", "rectangle"]})
    save_image(chelsea, config.storage.root / "cats" / "chelsea.jpg")
    return config


@pytest.fixture
def client(cat_config: Any, litemedsam: Any) -> TestClient:
    with TestClient(create_app(cat_config, model=litemedsam), raise_server_exceptions=False) as client:
        yield client


def test_health_setup_webhook_versions(client: TestClient, cat_config: Any, litemedsam: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    from batchlabel.annotate.preannotate import model_version_for

    caplog.set_level(logging.DEBUG)
    health = client.get("/health").json()
    assert health["status"] == "UP" and health["model_loaded"] is True
    assert health["model_id"] == litemedsam.model_id
    setup = client.post("/setup", json={"project": "3.1700000000", "schema": "<View/>",
                                        "hostname": "http://localhost:8080", "access_token": "TOKEN-abc123",
                                        "extra_params": None})
    assert setup.status_code == 200
    assert setup.json() == {"model_version": model_version_for(cat_config, litemedsam.model_id)}
    assert "TOKEN-abc123" not in caplog.text
    brushless = client.post("/setup", json={"project": "4.1", "schema": '<View><Image name="image" value="$image"/>'
                                            '<RectangleLabels name="r" toName="image"><Label value="cat"/>'
                                            "</RectangleLabels></View>"})
    assert brushless.status_code == 200 and "no BrushLabels tool" in caplog.text
    assert client.post("/setup", json={"schema": "<View"}).status_code == 200  # a broken schema is only logged
    webhook = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 3}})
    assert webhook.status_code == 200 and webhook.json() == {"status": "ok"}
    assert client.get("/versions").json() == {"versions": [setup.json()["model_version"]]}
    assert "webhook action=ANNOTATION_CREATED project=3" in caplog.text


def test_box_prompt_masks_the_cat_like_sam_predictor(client: TestClient, chelsea: np.ndarray,
                                                     litemedsam: Any, cat_config: Any) -> None:
    from segment_anything import SamPredictor

    from batchlabel.infer.images import load_image

    h, w = chelsea.shape[:2]
    response = client.post("/predict", json=predict_body(CAT_URL, [box_context(CAT_BOX, (h, w))]))
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["results"]
    types = [item["type"] for item in prediction["result"]]
    assert types == ["brushlabels", "rectanglelabels"]
    brush = prediction["result"][0]
    assert brush["from_name"] == "brush" and brush["value"]["brushlabels"] == ["cat"]
    assert (brush["original_width"], brush["original_height"]) == (w, h)
    (mask,) = brush_masks(prediction["result"])
    assert mask.shape == (h, w)

    predictor = SamPredictor(litemedsam.sam)
    rgb = load_image(cat_config.storage.root / "cats" / "chelsea.jpg").rgb  # the JPEG's pixels, as served
    predictor.set_image(np.array(rgb))
    expected, scores, _ = predictor.predict(box=np.array(CAT_BOX), multimask_output=False)
    assert iou(mask, expected[0]) >= 0.99
    assert mask.mean() > 0.4  # most of the cat
    assert prediction["score"] == pytest.approx(float(scores[0]), abs=0.02)
    assert prediction["model_version"].startswith("batchlabel litemedsam@")


def test_store_hit_after_one_encode_and_concurrent_misses_encode_once(
    cat_config: Any, litemedsam: Any, chelsea: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    unique = chelsea.copy()
    unique[0, 0] = np.random.default_rng().integers(0, 255, 3)  # a new image: no other test encoded it
    unique[-1, -1] = np.random.default_rng().integers(0, 255, 3)
    save_image(unique, cat_config.storage.root / "cats" / "unique.jpg")
    body = predict_body("/data/local-files/?d=cats/unique.jpg", [box_context(CAT_BOX, chelsea.shape[:2])])
    app = create_app(cat_config, model=litemedsam)
    with TestClient(app) as client, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: client.post("/predict", json=body), range(4)))
        assert [r.status_code for r in responses] == [200] * 4
        assert app.state.backend.provider.encodes == 1
        assert client.post("/predict", json=body).status_code == 200
        assert app.state.backend.provider.encodes == 1
    assert "embedding=memory" in caplog.text
    fresh = create_app(cat_config, model=litemedsam)  # new process, same store: no encode
    with TestClient(fresh) as client:
        assert client.post("/predict", json=body).status_code == 200
    assert fresh.state.backend.provider.encodes == 0
    assert "embedding=store" in caplog.text


def test_exif_orientation_masks_the_displayed_frame(client: TestClient, cat_config: Any,
                                                    chelsea: np.ndarray) -> None:
    upright = np.ascontiguousarray(np.rot90(chelsea, k=-1))  # what the viewer shows: 451 high, 300 wide
    save_image(upright, cat_config.storage.root / "cats" / "rotated.jpg", orientation=6)
    h, w = upright.shape[:2]
    box = (0.0, 20.0, 299.0, 400.0)
    body = predict_body("/data/local-files/?d=cats/rotated.jpg", [box_context(box, (h, w))])
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    brush = response.json()["results"][0]["result"][0]
    assert (brush["original_width"], brush["original_height"]) == (w, h) == (300, 451)
    (mask,) = brush_masks([brush])
    assert mask.shape == (451, 300)
    ys, xs = np.nonzero(mask)
    assert ys.min() >= 20 - 5 and ys.max() <= 400 + 5  # the mask lies in the (oriented) box


def test_multimask_returns_three_candidates_best_first(offline_config: Any, litemedsam: Any,
                                                       chelsea: np.ndarray) -> None:
    config = offline_config(litemedsam, serve={"multimask": True})
    save_image(chelsea, config.storage.root / "cats" / "chelsea.jpg")
    with TestClient(create_app(config, model=litemedsam)) as client:
        response = client.post("/predict", json=predict_body(CAT_URL, [box_context(CAT_BOX, chelsea.shape[:2])]))
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]["result"]
    scores = [item["score"] for item in result]
    assert [item["type"] for item in result] == ["brushlabels"] * 3
    assert scores == sorted(scores, reverse=True)
    assert len({item["id"] for item in result}) == 3


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "tasks"),
        ({"tasks": []}, 422, "tasks"),
        ({"tasks": [{"id": 1}]}, 422, "data"),
        ({"tasks": "nope"}, 422, "tasks"),
        (predict_body(CAT_URL, [{"type": "rectanglelabels", "value": {}}]), 422, "original_width"),
        (predict_body(CAT_URL, [point_context(10, 10, (300, 451))]), 422, "point"),  # LiteMedSAM: boxes only
        (predict_body(CAT_URL, [box_context(CAT_BOX, (300, 451), origin="prediction")]), 422, "predictions"),
        (predict_body("/data/local-files/?d=../../etc/passwd", [box_context(CAT_BOX, (300, 451))]), 403, ".."),
        # decoded once: a folder literally named "%2e%2e", which does not exist (never "..")
        (predict_body("/data/local-files/?d=%252e%252e/x", [box_context(CAT_BOX, (300, 451))]), 404, "not found"),
        (predict_body("/data/local-files/?d=/etc/passwd", [box_context(CAT_BOX, (300, 451))]), 403, "absolute"),
        (predict_body("/data/local-files/?d=cats/none.jpg", [box_context(CAT_BOX, (300, 451))]), 404, "not found"),
        (predict_body("https://example.com/a.jpg", [box_context(CAT_BOX, (300, 451))]), 403, "allow_remote_urls"),
        (predict_body(CAT_URL, [box_context(CAT_BOX, (300, 451))], label_config="<View"), 422, "XML"),
        ({**predict_body(CAT_URL, None), "tasks": [{"id": 1, "data": {"img": CAT_URL}}],
          "params": {"context": {"result": [box_context(CAT_BOX, (300, 451))]}}}, 422, "'image'"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(client: TestClient, body: dict, status: int, message: str) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_traversal_via_symlink_and_not_an_image(client: TestClient, cat_config: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_text("not yours")
    (cat_config.storage.root / "link.jpg").symlink_to(secret)
    (cat_config.storage.root / "text.jpg").write_text("not an image")
    box = [box_context(CAT_BOX, (300, 451))]
    refused = client.post("/predict", json=predict_body("/data/local-files/?d=link.jpg", box))
    assert refused.status_code == 403 and "outside the document root" in refused.json()["error"]
    broken = client.post("/predict", json=predict_body("/data/local-files/?d=text.jpg", box))
    assert broken.status_code == 422 and "cannot decode" in broken.json()["error"]


def test_non_json_and_oversized_bodies(offline_config: Any, litemedsam: Any) -> None:
    config = offline_config(litemedsam, serve={"max_request_mb": 0.01})
    with TestClient(create_app(config, model=litemedsam)) as client:
        garbage = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert garbage.status_code == 422 and "error" in garbage.json()
        big = client.post("/predict", content=b"x" * 20000, headers={"content-type": "application/json"})
        assert big.status_code == 413


def test_basic_auth_protects_every_route(offline_config: Any, litemedsam: Any) -> None:
    config = offline_config(litemedsam, serve={"username": "ann", "password": "pw"})
    with TestClient(create_app(config, model=litemedsam)) as client:
        assert client.get("/health").status_code == 401
        assert client.post("/setup", json={}).status_code == 401
        assert client.get("/health", auth=("ann", "nope")).status_code == 401
        assert client.get("/health", auth=("ann", "pw")).status_code == 200
