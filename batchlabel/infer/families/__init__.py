"""Model families behind one interface (:class:`~batchlabel.infer.families.base.ModelFamily`).

- :mod:`.sam`: SAM ViT-B/L/H, MobileSAM, LiteMedSAM (``segment_anything`` modeling, the existing engine);
- :mod:`.sam2`: SAM 2.1 hiera tiny/small/base+/large (transformers ``Sam2Model``);
- :mod:`.sam_hq`: HQ-SAM ViT-B/L/H (transformers ``SamHQModel``); ``sam_hq`` is the original label_anything's name
  for ``sam_hq_vit_b``.

:func:`load_family` builds the configured one; nothing is imported or loaded before it is called.
"""

from __future__ import annotations

import logging

from batchlabel.config import ModelConfig
from batchlabel.infer.families.base import ModelFamily
from batchlabel.infer.families.hf import HfModelSpec, TransformersFamily
from batchlabel.infer.families.sam2 import SAM2_SPECS, Sam2Family
from batchlabel.infer.families.sam_hq import SAM_HQ_SPECS, SamHqFamily

log = logging.getLogger(__name__)

#: Names accepted for compatibility with other tools, and the registered model each one means.
MODEL_ALIASES = {"sam_hq": "sam_hq_vit_b"}

HF_MODEL_SPECS: dict[str, HfModelSpec] = {**SAM2_SPECS, **SAM_HQ_SPECS}


def canonical_name(name: str) -> str:
    """``name`` with :data:`MODEL_ALIASES` resolved (logged), e.g. ``"sam_hq"`` -> ``"sam_hq_vit_b"``."""
    if name in MODEL_ALIASES:
        log.info("model name %s is the original label_anything's name for %s; using %s",
                 name, MODEL_ALIASES[name], MODEL_ALIASES[name])
        return MODEL_ALIASES[name]
    return name


def load_family(model_config: ModelConfig) -> ModelFamily:
    """The configured model as a :class:`ModelFamily`, weights loaded, on the configured device.

    Raises:
        WeightsUnavailableError: weights cannot be found, downloaded or loaded (the message says what to put where).
        ConfigError: random weights without ``allow_random_weights``, or an impossible device.
    """
    family = load_transformers_family(model_config)
    if family is not None:
        return family
    from batchlabel.infer.families.sam import SamFamily
    from batchlabel.infer.models import load_model

    return SamFamily(load_model(model_config))


def load_transformers_family(model_config: ModelConfig) -> TransformersFamily | None:
    """SAM 2.1 / HQ-SAM (the transformers families) loaded as :func:`load_family` does, or None for the other names
    (the alias resolved, and logged, once)."""
    name = canonical_name(model_config.name)
    if name in SAM2_SPECS:
        return Sam2Family.load(SAM2_SPECS[name], model_config)
    if name in SAM_HQ_SPECS:
        return SamHqFamily.load(SAM_HQ_SPECS[name], model_config)
    return None


__all__ = ["HF_MODEL_SPECS", "MODEL_ALIASES", "ModelFamily", "canonical_name", "load_family",
           "load_transformers_family"]
