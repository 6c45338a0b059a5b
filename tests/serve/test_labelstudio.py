"""Against a real Label Studio: connect ("Connected"), interactive Bbox2Label / Point2Label through
``/api/ml/{id}/interactive-annotating``, "Retrieve predictions" for all tasks, uploaded files, basic auth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from batchlabel.sync.label_config import generate_label_config
from tests.serve.conftest import (
    CAT_BOX,
    box_context,
    brush_masks,
    iou,
    point_context,
    save_image,
    write_sidecar,
)

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]


def ls_post(live: Any, path: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{live.url}{path}", json=body, headers={"Authorization": f"Token {live.api_key}"},
                      timeout=120, **kwargs)


def make_project(live: Any, config: Any, images: list[str]) -> tuple[int, list[int]]:
    project = live.client.projects.create(title=config.label_studio.project,
                                          label_config=generate_label_config(list(config.label_studio.labels)))
    if not images:
        return project.id, []
    tasks = [{"data": {"image": f"/data/local-files/?d={name}"}} for name in images]
    imported = live.client.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    return project.id, list(imported.task_ids)


def connect(live: Any, project_id: int, url: str, **auth: Any) -> Any:
    backend = live.client.ml.create(project=project_id, url=url, title="batchlabel", is_interactive=True, **auth)
    return live.client.ml.get(id=backend.id)


def interactive(live: Any, ml_id: int, task_id: int, context: list[dict[str, Any]]) -> dict[str, Any]:
    response = ls_post(live, f"/api/ml/{ml_id}/interactive-annotating",
                       {"task": task_id, "context": {"result": context}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_connect_bbox2label_retrieve_predictions_and_uploads(
    label_studio: Any, make_config: Any, litemedsam: Any, start_backend: Any, chelsea: np.ndarray
) -> None:
    from skimage import data

    config = make_config(preannotate={"mode": "boxes", "boxes_from": ["sidecar"], "outputs": ["brush", "rectangle"]})
    root: Path = config.storage.root
    save_image(chelsea, root / "chelsea.jpg")
    write_sidecar(root / "chelsea.jpg", [{"label": "cat", "xyxy": list(CAT_BOX)}])
    save_image(np.ascontiguousarray(data.astronaut()), root / "astronaut.jpg")
    write_sidecar(root / "astronaut.jpg", [{"label": "person", "xyxy": [130, 0, 440, 512]}])
    project_id, (cat_task, astronaut_task) = make_project(label_studio, config, ["chelsea.jpg", "astronaut.jpg"])

    server = start_backend(config, model=litemedsam)
    backend = connect(label_studio, project_id, server.url)
    assert backend.state == "CO", backend.state  # "Connected"

    # Bbox2Label: a predicted rectangle in the context is ignored, the manual one is used
    h, w = chelsea.shape[:2]
    context = [box_context((0, 0, 50, 50), (h, w), origin="prediction"), box_context(CAT_BOX, (h, w))]
    answer = interactive(label_studio, backend.id, cat_task, context)
    (mask,) = brush_masks(answer["result"])
    assert mask.shape == (h, w) and mask.mean() > 0.4  # most of the cat
    assert 0 < answer["score"] <= 1
    from segment_anything import SamPredictor

    from batchlabel.infer.images import load_image

    predictor = SamPredictor(litemedsam.sam)
    predictor.set_image(np.array(load_image(root / "chelsea.jpg").rgb))
    expected, _, _ = predictor.predict(box=np.array(CAT_BOX), multimask_output=False)
    assert iou(mask, expected[0]) >= 0.99

    # "Retrieve predictions": Label Studio calls /health, /setup, then one batch /predict
    response = ls_post(label_studio, f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
                       {"selectedItems": {"all": True, "excluded": []}})
    assert response.status_code == 200, response.text
    from batchlabel.annotate.preannotate import model_version_for

    version = model_version_for(config, litemedsam.model_id)
    for task_id, label in ((cat_task, "cat"), (astronaut_task, "person")):
        predictions = list(label_studio.client.predictions.list(task=task_id))
        assert len(predictions) == 1, f"task {task_id}: {predictions}"
        assert predictions[0].model_version == version
        items = predictions[0].result
        assert {item["type"] for item in items} == {"brushlabels", "rectanglelabels"}
        assert items[0]["value"]["brushlabels"] == [label]

    # a file uploaded to Label Studio is fetched with the API key
    upload = httpx.post(
        f"{label_studio.url}/api/projects/{project_id}/import",
        files={"file": ("cat-upload.jpg", (root / "chelsea.jpg").read_bytes(), "image/jpeg")},
        headers={"Authorization": f"Token {label_studio.api_key}"}, timeout=60,
    )
    assert upload.status_code == 201, upload.text
    uploaded = [t for t in label_studio.client.tasks.list(project=project_id) if t.id not in (cat_task, astronaut_task)]
    assert len(uploaded) == 1 and uploaded[0].data["image"].startswith("/data/upload/")
    answer = interactive(label_studio, backend.id, uploaded[0].id, [box_context(CAT_BOX, (h, w))])
    (uploaded_mask,) = brush_masks(answer["result"])
    assert uploaded_mask.sum() == mask.sum()  # same bytes, same embedding (store hit by content), same mask


def test_point2label_through_label_studio(
    label_studio: Any, make_config: Any, random_mobile_sam: Any, start_backend: Any, chelsea: np.ndarray
) -> None:
    from tests.serve.conftest import model_section

    config = make_config(model=model_section(random_mobile_sam))
    save_image(chelsea, config.storage.root / "chelsea.jpg")
    project_id, (task_id,) = make_project(label_studio, config, ["chelsea.jpg"])
    server = start_backend(config, model=random_mobile_sam)
    backend = connect(label_studio, project_id, server.url)
    size = chelsea.shape[:2]
    positive = interactive(label_studio, backend.id, task_id, [point_context(200, 150, size)])
    both = interactive(label_studio, backend.id, task_id,
                       [point_context(200, 150, size), point_context(260, 120, size, positive=False)])
    masks = brush_masks(positive["result"]), brush_masks(both["result"])
    assert len(masks[0]) == len(masks[1]) == 1
    assert masks[0][0].shape == size
    assert not np.array_equal(masks[0][0], masks[1][0])


def test_basic_auth_with_label_studio(
    label_studio: Any, make_config: Any, litemedsam: Any, start_backend: Any
) -> None:
    config = make_config(serve={"username": "annotator", "password": "correct horse"})
    project_id, _ = make_project(label_studio, config, [])
    server = start_backend(config, model=litemedsam)
    assert httpx.get(f"{server.url}/health").status_code == 401
    assert httpx.post(f"{server.url}/predict", json={}).status_code == 401
    from label_studio_sdk.core.api_error import ApiError

    try:  # without credentials Label Studio cannot connect (it refuses to create it, or marks it not connected)
        refused = connect(label_studio, project_id, server.url)
        assert refused.state != "CO", refused.state
    except ApiError as exc:
        assert exc.status_code == 400, exc
    backend = connect(label_studio, project_id, server.url, auth_method="BASIC_AUTH",
                      basic_auth_user="annotator", basic_auth_pass="correct horse")
    assert backend.state == "CO", backend.state
