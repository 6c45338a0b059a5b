"""batchlabel.infer.model_registry: every configurable model name has a spec (or a transformers family / alias),
with the official checkpoint's size and sha256."""

from __future__ import annotations

from batchlabel.config import MODEL_NAMES
from batchlabel.infer.families import HF_MODEL_SPECS, MODEL_ALIASES
from batchlabel.infer.model_registry import MODEL_SPECS


def test_registry_covers_config_names() -> None:
    assert set(MODEL_SPECS) | set(HF_MODEL_SPECS) | set(MODEL_ALIASES) == set(MODEL_NAMES)
    assert MODEL_SPECS["litemedsam"].prompt_kinds == frozenset({"box"})
    assert MODEL_SPECS["litemedsam"].input_size == 256 and MODEL_SPECS["sam_vit_h"].input_size == 1024
    for spec in MODEL_SPECS.values():
        assert spec.sha256 is not None and len(spec.sha256) == 64 and spec.size_bytes
    assert MODEL_SPECS["sam_vit_b"].url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
