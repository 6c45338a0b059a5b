"""Where a GPU encode batch's time goes: the image encoder's forward alone against the runtime's whole batch call.

Prints one JSON object on stdout. No files and no loaders: each row times, on synthetic ``(B, 3, S, S)`` uint8 canvases
already prepared in host memory (median of ``--repeats`` after a warm-up, CUDA synchronised around each stage):

- ``pin_s``: ``torch.from_numpy(batch).pin_memory()`` (what ``TorchRuntime.encode`` does for every batch);
- ``h2d_s``: the pinned batch to the device;
- ``forward_autocast_s``: normalisation + ``image_encoder`` under bf16 autocast with float32 weights (today's path);
- ``forward_bf16_weights_s``: the same with the encoder's weights cast to bfloat16 once (no per-call weight casts);
- ``d2h_s``: the ``(B, 256, 64, 64)`` features to float32 numpy on the host;
- ``runtime_encode_s``: ``TorchRuntime.encode`` on the same numpy batch (the stages above as the encoder runs them).

``images_per_s`` columns divide the batch size by those times. CUDA only (exits 0 with a note on a machine without
one)::

    python benchmarks/encoder_forward.py [--models sam_vit_b,sam_vit_h,mobile_sam] [--batches 1,8,32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("benchmarks.encoder_forward")


def _timed(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up, synchronising the device around each."""
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _measure(model: Any, runtime: Any, encoder_bf16: Any, batch: int, repeats: int) -> dict[str, Any]:
    """One row: the stages of one ``batch``-image batch (see the module docstring)."""
    import numpy as np
    import torch

    from batchlabel.infer.preprocess import normalise_canvas

    side = model.spec.input_size
    sync = torch.cuda.synchronize
    canvases = np.random.default_rng(0).integers(0, 256, size=(batch, 3, side, side), dtype=np.uint8)
    sizes = [(side, side)] * batch
    pinned = torch.from_numpy(canvases).pin_memory()
    on_device = pinned.to("cuda")

    def forward_autocast() -> Any:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model.sam.image_encoder(normalise_canvas(on_device, sizes, model.spec))

    def forward_bf16() -> Any:
        with torch.inference_mode():
            return encoder_bf16(normalise_canvas(on_device, sizes, model.spec).to(torch.bfloat16))

    features = forward_autocast()
    stages = {
        "pin_s": _timed(lambda: torch.from_numpy(canvases).pin_memory(), repeats, sync),
        "h2d_s": _timed(lambda: pinned.to("cuda", non_blocking=True), repeats, sync),
        "forward_autocast_s": _timed(forward_autocast, repeats, sync),
        "forward_bf16_weights_s": _timed(forward_bf16, repeats, sync),
        "d2h_s": _timed(lambda: features.float().cpu().numpy(), repeats, sync),
        "runtime_encode_s": _timed(lambda: runtime.encode(canvases, sizes), repeats, sync),
    }
    row: dict[str, Any] = {"model": model.spec.name, "batch": batch, "input_px": side}
    row.update({key: round(value, 5) for key, value in stages.items()})
    row["images_per_s"] = {key.removesuffix("_s"): round(batch / value, 1) for key, value in stages.items()}
    row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def _rows_for(name: str, batches: list[int], repeats: int) -> list[dict[str, Any]]:
    import copy

    import torch

    from batchlabel.config import ModelConfig
    from batchlabel.infer.encoder import TorchRuntime
    from batchlabel.infer.models import load_model

    extra = {} if name == "litemedsam" else {"checkpoint": "random", "allow_random_weights": True}
    model = load_model(ModelConfig(name=name, device="cuda", precision="bf16", **extra))
    runtime = TorchRuntime(model)
    encoder_bf16 = copy.deepcopy(model.sam.image_encoder).to(torch.bfloat16)
    rows = []
    for batch in batches:
        row = _measure(model, runtime, encoder_bf16, batch, repeats)
        log.info("%s", row)
        rows.append(row)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sam_vit_b,sam_vit_h,mobile_sam", help="comma-separated model names")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per stage (median)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    import torch

    report: dict[str, Any] = {
        "benchmark": "encoder_forward",
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": [],
    }
    if not torch.cuda.is_available():
        report["note"] = "no CUDA device: this benchmark measures GPU batches only"
        print(json.dumps(report, indent=2))
        return 0
    batches = [int(value) for value in args.batches.split(",")]
    for name in args.models.split(","):
        try:
            report["results"].extend(_rows_for(name, batches, args.repeats))
        except Exception as exc:  # one model's failure must not lose the other rows
            log.exception("%s failed", name)
            report["results"].append({"model": name, "error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
