"""batchlabel.infer.upsample against SAM's own resize (``F.interpolate`` twice, as ``Sam.postprocess_masks``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchlabel.infer import upsample
from batchlabel.infer.upsample import upsample_masks


def _sam_masks(logits: torch.Tensor, original_size: tuple[int, int], padded: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``Sam.postprocess_masks(logits, input_size, original_size) > 0`` and the ``input_size`` it used."""
    scale = padded / max(original_size)
    input_size = (int(original_size[0] * scale + 0.5), int(original_size[1] * scale + 0.5))
    upscaled = torch.nn.functional.interpolate(logits[:, None], (padded, padded), mode="bilinear", align_corners=False)
    upscaled = upscaled[..., : input_size[0], : input_size[1]]
    resized = torch.nn.functional.interpolate(upscaled, original_size, mode="bilinear", align_corners=False)
    return (resized[:, 0] > 0).numpy(), input_size


def _logits(kind: str, seed: int) -> torch.Tensor:
    """``(1, 256, 256)`` low-res logits: smooth blobs, a disc, or noise (what random decoder weights give)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return torch.randn((1, 256, 256), generator=generator)
    if kind == "disc":
        yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
        return ((60 - ((yy - 120) ** 2 + (xx - 131) ** 2).sqrt()) / 10)[None]
    noise = torch.randn((1, 1, 256, 256), generator=generator)
    return torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)[:, 0] * 9 - 1.0


@pytest.mark.parametrize("kind", ["blobs", "disc", "noise"])
@pytest.mark.parametrize(
    ("original_size", "padded"),
    [((480, 640), 1024), ((3000, 4000), 1024), ((37, 23), 1024), ((375, 500), 256), ((1000, 333), 256)],
)
def test_upsample_matches_sam_postprocess(kind: str, original_size: tuple[int, int], padded: int) -> None:
    logits = torch.cat([_logits(kind, sum(original_size)), torch.full((1, 256, 256), -1.0)])  # + an empty mask
    expected, input_size = _sam_masks(logits, original_size, padded)
    ours = upsample_masks(logits, original_size=original_size, input_size=input_size, padded_size=padded)
    assert ours.shape == (2, *original_size) and ours.dtype == bool
    assert expected[0].any()
    disagree = np.logical_xor(ours[0], expected[0]).sum()
    assert disagree <= max(2, expected[0].sum() // 100_000), disagree
    assert not ours[1].any()


@pytest.mark.parametrize("kind", ["blobs", "disc", "noise"])
@pytest.mark.parametrize("original_size", [(1080, 1920), (300, 451)])
def test_run_products_and_row_gathers_agree(
    kind: str, original_size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One matrix product per run of output rows gives the pixels of the per-row gather (up to float rounding)."""
    logits = _logits(kind, 7).numpy()
    scale = 1024 / max(original_size)
    input_size = (int(original_size[0] * scale + 0.5), int(original_size[1] * scale + 0.5))
    kwargs = {"original_size": original_size, "input_size": input_size, "padded_size": 1024}
    monkeypatch.setattr(upsample, "_MIN_RUN_ROWS", 0)
    runs = upsample_masks(logits, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(upsample, "_MIN_RUN_ROWS", float("inf"))
    gathered = upsample_masks(logits, **kwargs)  # type: ignore[arg-type]
    assert gathered.any() and not gathered.all()
    assert np.logical_xor(runs, gathered).sum() <= 2


def test_region_outside_the_positive_logits_stays_background() -> None:
    """A mask in one corner: only its region is evaluated, the rest of a large output is untouched background."""
    logits = torch.full((1, 256, 256), -2.0)
    logits[0, 10:20, 200:230] = 3.0
    expected, input_size = _sam_masks(logits, (3000, 4000), 1024)
    ours = upsample_masks(logits.numpy(), original_size=(3000, 4000), input_size=input_size, padded_size=1024)
    np.testing.assert_array_equal(ours, expected)
    rows, cols = np.nonzero(ours[0])
    assert rows.max() < 400 and cols.min() > 3000
