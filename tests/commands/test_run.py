"""``batchlabel run`` and ``status`` against a real Label Studio with LiteMedSAM (real weights)."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from batchlabel.annotate.preannotate import model_version_for
from batchlabel.commands.ingest import run_command
from tests.ingest.ingest_helpers import project_tasks, run_cli, sample_images, sidecar, write_png, write_yaml_config

pytestmark = [pytest.mark.labelstudio, pytest.mark.slow]


def test_run_creates_one_task_per_content_lists_bad_files_and_survives_a_lost_journal(
        label_studio, make_config, tmp_path):
    config = make_config(preannotate={"mode": "none"})
    root = config.storage.root
    images = sample_images(3)
    hashes = {
        "top.png": write_png(root / "top.png", images[0]),
        "sub/a.png": write_png(root / "sub" / "a.png", images[1]),
        "sub/deep/b.png": write_png(root / "sub" / "deep" / "b.png", images[2]),
    }
    shutil.copy(root / "sub" / "a.png", root / "copy-of-a.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    cfg = write_yaml_config(config, tmp_path / "cfg.yaml")

    first = run_cli("run", str(cfg), "--json")
    assert first.returncode == 1, first.stderr  # the broken file fails, and is listed
    report = json.loads(first.stdout)
    assert [f["path"] for f in report["failures"]] == ["broken.png"]
    assert report["duplicates"] == 1 and report["stages"]["pushed"] == 3
    tasks = project_tasks(label_studio.client, config.label_studio.project)
    by_sha = {t["meta"]["sha256"]: t for t in tasks}
    assert len(tasks) == 3 and set(by_sha) == set(hashes.values())
    for rel, sha in hashes.items():
        if rel != "sub/a.png":  # its copy may have come first: either name stands for the content
            assert by_sha[sha]["data"]["image"] == f"/data/local-files/?d={rel}"

    status = run_cli("status", str(cfg), "--json")
    state = json.loads(status.stdout)
    assert state["failures"][0]["path"] == "broken.png" and state["failures"][0]["reason"]
    assert state["label_studio"]["state"] == "ok" and state["embedding_store_bytes"] > 0

    config.journal_path.unlink()
    again = run_cli("run", str(cfg), "--json")
    assert again.returncode == 1, again.stderr
    assert len(project_tasks(label_studio.client, config.label_studio.project)) == 3  # reconciled, no duplicates
    assert json.loads(again.stdout)["already_in_label_studio"] == 3


def test_boxes_mode_gives_each_existing_rectangle_a_mask_with_its_label(label_studio, make_config):
    from batchlabel.infer.decoder import MaskDecoder, Prompt
    from batchlabel.infer.models import load_model
    from batchlabel.infer.store import EmbeddingStore
    from batchlabel.sync import client as C
    from batchlabel.sync.results import parse_rectangle, parse_result_mask

    config = make_config(preannotate={"mode": "boxes", "outputs": ["brush", "rectangle"],
                                      "boxes_from": ["tasks", "sidecar"]})
    root = config.storage.root
    images = sample_images(3)
    shas = [write_png(root / "img" / f"{i}.png", image) for i, image in enumerate(images)]
    sidecar(root / "img" / "2.png", [("person", [10, 12, 60, 70])])
    ls = label_studio.client
    project = C.ensure_project(ls, config)
    rect = {"from_name": "rect", "to_name": "image", "type": "rectanglelabels", "original_width": 96,
            "original_height": 96, "image_rotation": 0}
    annotated = {"data": {"image": C.image_url("img/0.png")}, "annotations": [{"result": [
        {**rect, "value": {"x": 10, "y": 10, "width": 40, "height": 50, "rotation": 0, "rectanglelabels": ["cat"]}},
        {**rect, "value": {"x": 55, "y": 5, "width": 40, "height": 40, "rotation": 0,
                           "rectanglelabels": ["person"]}},
    ]}]}
    detected = {"data": {"image": C.image_url("img/1.png")}, "predictions": [{"model_version": "detector", "result": [
        {**rect, "value": {"x": 20, "y": 30, "width": 50, "height": 40, "rotation": 0, "rectanglelabels": ["cat"]}},
    ]}]}
    ls.projects.import_tasks(id=project.id, request=[annotated, detected])

    assert run_command(config, argparse.Namespace(json=True, no_progress=True)) == 0

    model = load_model(config.model)
    version = model_version_for(config, model.model_id)
    decoder = MaskDecoder.from_model(model)
    store = EmbeddingStore(config.embeddings_dir, max_bytes=10**9)
    tasks = {C.rel_path_from_url(t["data"]["image"]): t for t in project_tasks(ls, config.label_studio.project)}
    assert sorted(tasks) == ["img/0.png", "img/1.png", "img/2.png"]  # the imported tasks were reused
    assert ls.projects.get(id=project.id).model_version == version
    expected_labels = {"img/0.png": ["cat", "person"], "img/1.png": ["cat"], "img/2.png": ["person"]}
    for index, rel in enumerate(sorted(tasks)):
        ours = [p for p in tasks[rel]["predictions"] if p["model_version"] == version]
        assert len(ours) == 1, rel
        brushes = [item for item in ours[0]["result"] if item["type"] == "brushlabels"]
        rects = [item for item in ours[0]["result"] if item["type"] == "rectanglelabels"]
        assert sorted(parse_result_mask(b)[0] for b in brushes) == expected_labels[rel]
        assert len(rects) == len(brushes)
        embedding = store.get(shas[index], model.model_id)
        assert embedding is not None and tasks[rel]["meta"]["sha256"] == shas[index]
        prompts = [item for item in tasks[rel]["annotations"][0]["result"]] if tasks[rel]["annotations"] else []
        prompts += [item for p in tasks[rel]["predictions"] if p["model_version"] == "detector" for item in p["result"]]
        boxes = [parse_rectangle(item)[1] for item in prompts] or [(10, 12, 60, 70)]
        for box, brush in zip(boxes, brushes, strict=True):
            reference = decoder.decode(embedding, Prompt(box=np.asarray(box, np.float32))).masks[0]
            assert np.array_equal(parse_result_mask(brush)[1], reference), rel
