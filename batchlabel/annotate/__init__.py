"""What batch pre-annotation (``run``/``watch``) and the ML backend (``serve``) share: prompts from Label Studio
results, sidecars and COCO files, one image's prediction (:mod:`.preannotate`) and its ``model_version``."""
