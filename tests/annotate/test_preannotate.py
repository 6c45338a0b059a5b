"""Pre-annotation: model_version naming, prompt sources (tasks, sidecar, COCO), and the four modes end to end on
real decoders (LiteMedSAM real weights for boxes/points; a random-weight MobileSAM for everything-mode plumbing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from batchlabel.annotate.preannotate import (
    BoxPrompt,
    PromptSourceError,
    coco_boxes,
    gather_boxes,
    model_version_for,
    preannotate,
    read_sidecar,
    task_image_path,
)
from batchlabel.config import parse_config
from batchlabel.sync.results import parse_result_mask
from tests.ingest.ingest_helpers import sample_images, write_png


def _config(tmp_path, **preannotate_section):
    raw = {
        "storage": {"root": str(tmp_path / "root")},
        "label_studio": {"url": "http://127.0.0.1:1", "api_key": "k", "labels": ["cat", "person"]},
        "model": {"name": "litemedsam", "device": "cpu"},
        "preannotate": preannotate_section,
        "cache": {"dir": str(tmp_path / "cache")},
    }
    return parse_config(raw, source="test.yaml", base_dir=tmp_path)


def test_model_version_names_model_mode_and_thresholds(tmp_path):
    everything = model_version_for(_config(tmp_path, mode="everything", min_score=0.8), "litemedsam@79d8c9dc")
    assert everything.startswith("batchlabel litemedsam@79d8c9dc everything iou>=0.8 stab>=0.92 pps=16")
    boxes = model_version_for(_config(tmp_path, mode="boxes", boxes_from=["tasks", "coco"]), "m@1")
    assert boxes == "batchlabel m@1 boxes from=tasks+coco brush+rectangle"
    assert model_version_for(_config(tmp_path, mode="boxes"), "m@1") != model_version_for(
        _config(tmp_path, mode="boxes", outputs=["polygon"]), "m@1")


def test_task_images_and_sidecars_are_read_only_inside_the_document_root(tmp_path, caplog):
    config = _config(tmp_path, mode="boxes", boxes_from=["sidecar"])
    root = config.storage.root
    root.mkdir()
    (root / "ok.png").write_bytes(b"x")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([{"label": "cat", "bbox": [1, 2, 3, 4]}]))
    (root / "ok.json").symlink_to(secret)  # a sidecar that is a link out of the root
    (root / "out.png").symlink_to(tmp_path / "elsewhere.png")
    (tmp_path / "elsewhere.png").write_bytes(b"y")

    def task(rel, key="image"):
        return {"id": 5, "data": {key: f"/data/local-files/?d={rel}"}}

    assert task_image_path(config, task("ok.png")) == (root / "ok.png").resolve()
    assert task_image_path(config, task("ok.png", "img"), "img") == (root / "ok.png").resolve()  # the config's key
    assert task_image_path(config, task("../secret.json")) is None
    assert task_image_path(config, task("out.png")) is None and "out.png not read" in caplog.text
    assert task_image_path(config, task("missing.png")) is None
    with pytest.raises(PromptSourceError, match=r"ok\.json: sidecar not read"):
        gather_boxes(config, task("ok.png"), (10, 10))


def test_sidecar_and_coco_boxes(tmp_path):
    image = tmp_path / "root" / "sub" / "cat.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"x")
    (image.parent / "cat.json").write_text(json.dumps({"objects": [
        {"label": "cat", "bbox": [1, 2, 10, 20]}, {"label": "person", "xyxy": [5, 5, 9, 9]}]}))
    assert read_sidecar(image) == [BoxPrompt("cat", (1, 2, 11, 22)), BoxPrompt("person", (5, 5, 9, 9))]
    (image.parent / "cat.json").write_text(json.dumps([{"label": "cat", "bbox": [1, 2]}]))
    with pytest.raises(PromptSourceError, match=r"cat\.json: objects\[0\]: bbox must be 4 numbers"):
        read_sidecar(image)
    coco = tmp_path / "det.json"
    coco.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "sub/cat.jpg"}, {"id": 8, "file_name": "other/dog.jpg"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [0, 0, 4, 4]}],
        "categories": [{"id": 3, "name": "cat"}],
    }))
    assert coco_boxes(coco).get_boxes("sub/cat.jpg") == [BoxPrompt("cat", (0, 0, 4, 4))]
    assert coco_boxes(coco).get_boxes("elsewhere/dog.jpg") == []  # matched by unique bare name, no boxes
    config = _config(tmp_path, mode="boxes", boxes_from=["tasks", "coco"], coco_file=str(coco))
    task = {"data": {"image": "/data/local-files/?d=sub/cat.jpg"}, "annotations": [{"result": [
        {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": 200,
         "original_height": 100, "value": {"x": 0, "y": 0, "width": 2, "height": 4, "rectanglelabels": ["cat"]}}]}],
        "predictions": [{"model_version": "batchlabel old", "result": [
            {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": 200,
             "original_height": 100,
             "value": {"x": 50, "y": 50, "width": 5, "height": 5, "rectanglelabels": ["person"]}}]}]}
    # the annotation's box (rescaled from 200x100 to 100x50) equals the COCO box: kept once; our own old
    # prediction is never read back as a prompt
    assert gather_boxes(config, task, (50, 100)) == [BoxPrompt("cat", (0.0, 0.0, 2.0, 2.0)),
                                                     BoxPrompt("cat", (0, 0, 4, 4))]


@pytest.mark.slow
def test_boxes_points_and_none_modes_on_litemedsam(tmp_path):
    from batchlabel.infer.decoder import MaskDecoder, Prompt
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.images import load_image
    from batchlabel.infer.models import load_model

    config = _config(tmp_path, mode="boxes", outputs=["brush", "polygon", "rectangle"])
    path = tmp_path / "root" / "a.png"
    write_png(path, sample_images(1)[0])
    model = load_model(config.model)
    embedding = BatchEncoder(model, None).encode_image(load_image(path))
    decoder = MaskDecoder.from_model(model)
    rect = {"type": "rectanglelabels", "from_name": "rect", "to_name": "image", "original_width": 96,
            "original_height": 96,
            "value": {"x": 10, "y": 10, "width": 50, "height": 60, "rectanglelabels": ["person"]}}
    task = {"data": {"image": "/data/local-files/?d=a.png"},
            "predictions": [{"model_version": "yolo", "result": [rect]}]}
    prediction = preannotate(config, decoder, embedding, task)
    assert prediction["model_version"] == model_version_for(config, model.model_id)
    kinds = [item["type"] for item in prediction["result"]]
    assert kinds[0] == "brushlabels" and kinds[-1] == "rectanglelabels" and "polygonlabels" in kinds
    label, mask = parse_result_mask(prediction["result"][0])
    reference = decoder.decode(embedding, Prompt(box=np.array([9.6, 9.6, 57.6, 67.2], np.float32)))
    assert label == "person" and np.array_equal(mask, reference.masks[0])
    assert prediction["score"] == pytest.approx(float(reference.scores[0]), abs=1e-4)
    assert preannotate(config, decoder, embedding, {"data": {"image": "/data/local-files/?d=a.png"}}) is None
    assert preannotate(_config(tmp_path, mode="none"), decoder, embedding, task) is None


@pytest.mark.slow
def test_everything_mode_plumbing_with_random_mobile_sam(tmp_path):
    from batchlabel.infer.decoder import MaskDecoder
    from batchlabel.infer.encoder import BatchEncoder
    from batchlabel.infer.images import load_image
    from batchlabel.infer.models import load_model

    config = _config(tmp_path, mode="everything", default_label="cat", min_score=0.0, stability_score_thresh=0.0,
                     points_per_side=4, min_area_px=0, max_masks=5, outputs=["brush", "rectangle"])
    config = config.model_copy(update={"model": config.model.model_copy(update={
        "name": "mobile_sam", "checkpoint": "random", "allow_random_weights": True})})
    path = tmp_path / "root" / "a.png"
    write_png(path, sample_images(1, side=64)[0])
    model = load_model(config.model)
    embedding = BatchEncoder(model, None).encode_image(load_image(path))
    prediction = preannotate(config, MaskDecoder.from_model(model), embedding, {"data": {}})
    assert prediction is not None and prediction["model_version"].startswith("batchlabel mobile_sam@")
    brushes = [item for item in prediction["result"] if item["type"] == "brushlabels"]
    assert 1 <= len(brushes) <= 5
    assert all(parse_result_mask(item)[0] == "cat" and item["original_width"] == 64 for item in brushes)
