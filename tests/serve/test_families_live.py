"""As a new user with SAM 2.1 / HQ-SAM, against a real Label Studio: ``model.checkpoint`` a local Hugging Face folder
(a tiny random config written with ``save_pretrained``), ``batchlabel run`` gives tasks with predictions, then
``batchlabel serve`` answers a point and a box through ``/api/ml/{id}/interactive-annotating`` with a mask, decoding
on the embedding ``run`` stored (no encode). For ``sam2.1_hiera_tiny``, ``sam_hq_vit_b`` and the name ``sam_hq``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from batchlabel.infer.families import HF_MODEL_SPECS, canonical_name
from batchlabel.infer.families.hf import TransformersFamily
from batchlabel.infer.families.sam2 import Sam2Family
from batchlabel.infer.families.sam_hq import SamHqFamily
from batchlabel.infer.models import RANDOM_WEIGHTS_SEED
from batchlabel.sync.client import find_project
from tests.ingest.ingest_helpers import project_tasks, run_cli, write_yaml_config
from tests.serve.conftest import CAT_BOX, box_context, brush_masks, point_context, save_image, write_sidecar
from tests.serve.test_labelstudio import connect, interactive

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]

FAMILY_CLASSES: dict[str, type[TransformersFamily]] = {"sam2": Sam2Family, "sam_hq": SamHqFamily}


def save_tiny_model(name: str, folder: Path) -> Path:
    """``name``'s tiny random-weights model written as a Hugging Face folder (config.json + model.safetensors)."""
    spec = HF_MODEL_SPECS[canonical_name(name)]
    config = spec.tiny_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = FAMILY_CLASSES[config.model_type].model_class()(config)
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam_hq_vit_b", "sam_hq"])
def test_run_then_serve_decodes_from_the_store(
    name: str, label_studio: Any, make_config: Any, start_backend: Any, chelsea: np.ndarray, tmp_path: Path
) -> None:
    folder = save_tiny_model(name, tmp_path / "hf-model")
    config = make_config(
        model={"name": name, "checkpoint": str(folder), "device": "cpu", "batch_size": 1},
        preannotate={"mode": "boxes", "boxes_from": ["sidecar"], "outputs": ["brush", "rectangle"]},
    )
    save_image(chelsea, config.storage.root / "chelsea.jpg")
    write_sidecar(config.storage.root / "chelsea.jpg", [{"label": "cat", "xyxy": list(CAT_BOX)}])

    result = run_cli("run", str(write_yaml_config(config, tmp_path / "cfg.yaml")), "--json", timeout_s=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["stages"]["pushed"] == 1, report
    (task,) = project_tasks(label_studio.client, config.label_studio.project)
    (prediction,) = task["predictions"]
    assert canonical_name(name) in prediction["model_version"]
    assert {item["type"] for item in prediction["result"]} == {"brushlabels", "rectanglelabels"}

    server = start_backend(config)
    provider = server.app.state.backend.provider
    project = find_project(label_studio.client, config.label_studio.project)
    backend = connect(label_studio, project.id, server.url)
    size = chelsea.shape[:2]
    for context in ([point_context(200, 150, size)], [box_context(CAT_BOX, size)]):
        answer = interactive(label_studio, backend.id, task["id"], context)
        (mask,) = brush_masks(answer["result"])
        assert mask.shape == size
    assert provider.encodes == 0  # both clicks decoded on the embedding `run` stored
