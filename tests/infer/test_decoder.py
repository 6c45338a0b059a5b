"""batchlabel.infer.decoder on random-weight SAM decoders and random embeddings (a decoder needs no encoder).

Parity with ``SamPredictor`` on real images and weights is in test_parity.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry

from batchlabel.infer.decoder import DecodedMasks, LowRes, MaskDecoder, Prompt, decode_threads, select_masks
from batchlabel.infer.embedding import ImageEmbedding
from batchlabel.infer.onnx_decoder import (
    CachedOnnxMaskDecoder,
    export_prompt_decoder,
)
from batchlabel.infer.sam_mask_decoder import image_to_token, interleave_logits, token_to_image, upscale_tokens


@pytest.fixture(scope="module")
def sam() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return sam_model_registry["vit_b"]().eval()


@pytest.fixture(scope="module")
def decoder(sam: torch.nn.Module) -> MaskDecoder:
    return MaskDecoder(sam, input_size=1024, model_id="sam_vit_b@random")


def upscale_logits(decoder: torch.nn.Module, keys: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
    """:func:`upscale_tokens` in image layout ``(B, K, 4g, 4g)`` (what SAM's decoder computes), for comparisons."""
    return interleave_logits(upscale_tokens(decoder, keys, hyper_in))


def make_embedding(seed: int, original_size: tuple[int, int] = (480, 640), sha: str | None = None) -> ImageEmbedding:
    rng = np.random.default_rng(seed)
    scale = 1024 / max(original_size)
    input_size = (int(original_size[0] * scale + 0.5), int(original_size[1] * scale + 0.5))
    return ImageEmbedding(
        features=rng.standard_normal((1, 256, 64, 64)).astype(np.float16),
        original_size=original_size,
        input_size=input_size,
        model_id="sam_vit_b@random",
        precision="fp32",
        image_sha256=sha or f"{seed:064x}",
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


POSITIVE = Prompt(points=np.array([[320.0, 240.0]]), point_labels=np.array([1]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs points, a box or mask_logits"),
        ({"points": np.zeros((1, 2))}, "point_labels"),
        ({"points": np.zeros((2, 3)), "point_labels": np.ones(2)}, r"\(N, 2\)"),
        ({"points": np.zeros((2, 2)), "point_labels": np.ones(3)}, r"shape \(2,\)"),
        ({"points": np.zeros((1, 2)), "point_labels": np.array([2])}, "1 \\(positive\\) or 0"),
        ({"points": np.array([[np.nan, 1.0]]), "point_labels": np.ones(1)}, "finite"),
        ({"point_labels": np.ones(1), "box": [0, 0, 1, 1]}, "without points"),
        ({"box": np.array([1, 2, 3])}, "4 finite numbers"),
        ({"box": np.array([10, 10, 5, 20])}, "x2 >= x1"),
        ({"mask_logits": np.zeros((1, 64, 64))}, r"\(1, 256, 256\)"),
    ],
)
def test_prompt_validation(kwargs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prompt(**kwargs)


def test_prompt_normalises_dtypes_and_structure() -> None:
    prompt = Prompt(points=[[1, 2], [3, 4]], point_labels=[1, 0], box=[0, 0, 5, 5], mask_logits=np.zeros((256, 256)))
    assert prompt.points.dtype == np.float32 and prompt.point_labels.dtype == np.int32
    assert prompt.mask_logits.shape == (1, 256, 256)
    assert prompt.structure == (2, True, True)
    assert prompt.kinds == {"point", "box", "mask"}
    assert POSITIVE.ambiguous and not prompt.ambiguous


def test_decode_shapes_and_multimask_order(decoder: MaskDecoder) -> None:
    embedding = make_embedding(1)
    single = decoder.decode(embedding, POSITIVE)
    multi = decoder.decode(embedding, POSITIVE, multimask=True)
    assert isinstance(single, DecodedMasks)
    assert single.masks.shape == (1, 480, 640) and single.masks.dtype == bool
    assert single.scores.shape == (1,) and single.scores.dtype == np.float32
    assert single.low_res_logits.shape == (1, 256, 256) and single.low_res_logits.dtype == np.float32
    assert multi.masks.shape == (3, 480, 640)
    assert np.all(np.diff(multi.scores) <= 0), multi.scores
    # a lone click with multimask=False returns the best of the three candidates
    assert single.scores[0] == pytest.approx(multi.scores[0])
    assert np.array_equal(single.masks[0], multi.masks[0])


def test_negative_point_changes_the_mask(decoder: MaskDecoder) -> None:
    embedding = make_embedding(2)
    both = Prompt(points=np.array([[320.0, 240.0], [330.0, 250.0]]), point_labels=np.array([1, 0]))
    positives = Prompt(points=np.array([[320.0, 240.0], [330.0, 250.0]]), point_labels=np.array([1, 1]))
    alone = decoder.decode(embedding, POSITIVE).masks[0]
    with_negative = decoder.decode(embedding, both).masks[0]
    two_positive = decoder.decode(embedding, positives).masks[0]
    assert alone.any() and with_negative.any()
    assert iou(alone, with_negative) < 0.99
    assert iou(two_positive, with_negative) < 0.99


def test_decode_many_matches_single_decodes(decoder: MaskDecoder) -> None:
    embedding = make_embedding(3)
    prompts = [
        Prompt(points=np.array([[100.0 + 40 * i, 80.0 + 30 * i]]), point_labels=np.array([1])) for i in range(5)
    ] + [
        Prompt(box=np.array([50.0, 60.0, 300.0, 200.0])),
        Prompt(points=np.array([[10.0, 20.0], [200.0, 100.0]]), point_labels=np.array([1, 0]), box=[0, 0, 400, 300]),
    ]
    many = decoder.decode_many(embedding, prompts, max_batch=3)
    assert len(many) == len(prompts)
    for prompt, batched in zip(prompts, many, strict=True):
        alone = decoder.decode(embedding, prompt)
        np.testing.assert_allclose(batched.scores, alone.scores, atol=1e-4)
        assert iou(batched.masks[0], alone.masks[0]) >= 0.999


def test_mask_logits_refinement_changes_result(decoder: MaskDecoder) -> None:
    embedding = make_embedding(4)
    first = decoder.decode(embedding, POSITIVE)
    refined = decoder.decode(
        embedding,
        Prompt(points=POSITIVE.points, point_labels=POSITIVE.point_labels, mask_logits=first.low_res_logits),
    )
    assert refined.masks.shape == (1, 480, 640)
    assert not np.allclose(refined.low_res_logits, first.low_res_logits)


def test_cache_is_bounded_and_keyed_by_content(sam: torch.nn.Module) -> None:
    decoder = MaskDecoder(sam, input_size=1024, cache_images=2)
    same_sha_a = make_embedding(5, sha="f" * 64)
    same_sha_b = make_embedding(6, sha="f" * 64)  # same name, other features (must not hit a stale cache entry)
    a = decoder.decode(same_sha_a, POSITIVE)
    b = decoder.decode(same_sha_b, POSITIVE)
    assert not np.allclose(a.low_res_logits, b.low_res_logits)
    decoder.decode(make_embedding(7), POSITIVE)
    assert len(decoder._cache) == 2
    uncached = MaskDecoder(sam, input_size=1024, cache_images=0).decode(same_sha_a, POSITIVE)
    np.testing.assert_allclose(uncached.low_res_logits, a.low_res_logits, atol=1e-4)


def test_concurrent_decodes_equal_serial(decoder: MaskDecoder) -> None:
    embeddings = [make_embedding(10 + i) for i in range(3)]
    prompt = Prompt(box=np.array([100.0, 100.0, 400.0, 300.0]))
    expected = [decoder.decode(e, prompt).low_res_logits for e in embeddings]
    decoder.clear_cache()
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = decoder.decode(embeddings[index % 3], prompt).low_res_logits
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, logits in results.items():
        np.testing.assert_allclose(logits, expected[index % 3], atol=1e-4)


def test_unsupported_prompt_kind_is_a_clear_error(sam: torch.nn.Module) -> None:
    box_only = MaskDecoder(sam, input_size=1024, prompt_kinds=("box",), model_id="litemedsam@test")
    embedding = ImageEmbedding(
        features=np.zeros((1, 256, 64, 64), np.float32),
        original_size=(480, 640),
        input_size=(768, 1024),
        model_id="litemedsam@test",
        precision="fp32",
        image_sha256="0" * 64,
    )
    with pytest.raises(ValueError, match="litemedsam@test does not support point prompts"):
        box_only.decode(embedding, POSITIVE)
    assert box_only.decode(embedding, Prompt(box=[10, 10, 100, 100])).masks.shape == (1, 480, 640)


def test_wrong_model_or_input_size_is_refused(decoder: MaskDecoder) -> None:
    embedding = make_embedding(8)
    other_model = ImageEmbedding(embedding.features, (480, 640), (768, 1024), "litemedsam@x", "fp32", "a" * 64)
    with pytest.raises(ValueError, match="re-encode"):
        decoder.decode(other_model, POSITIVE)
    wrong_size = ImageEmbedding(embedding.features, (480, 640), (192, 256), "sam_vit_b@random", "fp32", "a" * 64)
    with pytest.raises(ValueError, match="input_size"):
        decoder.decode(wrong_size, POSITIVE)


def test_upscale_logits_matches_sam_output_upscaling(sam: torch.nn.Module) -> None:
    decoder = sam.mask_decoder
    generator = torch.Generator().manual_seed(3)
    keys = torch.randn(2, 4096, 256, generator=generator)
    hyper_in = torch.randn(2, 4, 32, generator=generator)
    with torch.inference_mode():
        upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(2, 256, 64, 64))
        expected = (hyper_in @ upscaled.flatten(2)).view(2, 4, 256, 256)
        ours = upscale_logits(decoder, keys, hyper_in)
    assert ours.shape == (2, 4, 256, 256)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("image_batch", [1, 3])
def test_folded_attention_equals_sam_attention(sam: torch.nn.Module, image_batch: int) -> None:
    """Folding both cross-attentions through the tokens gives SAM's ``Attention.forward`` (image side broadcast)."""
    layer = sam.mask_decoder.transformer.layers[1]
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randn(3, 7, 256, generator=generator)
    token_values = torch.randn(3, 7, 256, generator=generator)
    image_k = torch.randn(image_batch, 4096, 256, generator=generator)
    image_v = torch.randn(image_batch, 4096, 256, generator=generator)
    with torch.inference_mode():
        t2i = layer.cross_attn_token_to_image
        expected = t2i(q=tokens, k=image_k.expand(3, -1, -1), v=image_v.expand(3, -1, -1))
        torch.testing.assert_close(token_to_image(t2i, tokens, image_k, image_v), expected, atol=1e-4, rtol=1e-4)
        i2t = layer.cross_attn_image_to_token
        expected = i2t(q=image_k.expand(3, -1, -1), k=tokens, v=token_values)
        torch.testing.assert_close(image_to_token(i2t, image_k, tokens, token_values), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("multimask", "ambiguous"), [(False, False), (False, True), (True, False)])
def test_selection_is_the_same_in_token_and_image_layout(
    sam: torch.nn.Module, multimask: bool, ambiguous: bool
) -> None:
    generator = torch.Generator().manual_seed(4)
    keys = torch.randn(2, 4096, 256, generator=generator)
    hyper_in = torch.randn(2, 4, 32, generator=generator)
    scores = torch.tensor([[0.1, 0.5, 0.9, 0.3], [0.8, 0.7, 0.2, 0.6]])
    with torch.inference_mode():
        tokens = select_masks(
            LowRes(upscale_tokens(sam.mask_decoder, keys, hyper_in), scores, layout="tokens"),
            multimask=multimask, ambiguous=ambiguous,
        )
        image = select_masks(
            LowRes(upscale_logits(sam.mask_decoder, keys, hyper_in), scores), multimask=multimask, ambiguous=ambiguous
        )
    torch.testing.assert_close(tokens.logits, image.logits)
    torch.testing.assert_close(tokens.scores, image.scores)
    expected_scores = {(True, False): [[0.9, 0.5, 0.3], [0.7, 0.6, 0.2]], (False, True): [[0.9], [0.7]],
                       (False, False): [[0.1], [0.8]]}[(multimask, ambiguous)]
    torch.testing.assert_close(image.scores, torch.tensor(expected_scores))
    assert image.logits.shape == (2, len(expected_scores[0]), 256, 256)


@pytest.fixture(scope="module")
def cached_onnx_decoder(sam: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> CachedOnnxMaskDecoder:
    path = export_prompt_decoder(sam, tmp_path_factory.mktemp("onnx") / "prompt-decoder.onnx")
    return CachedOnnxMaskDecoder(sam, path, input_size=1024, model_id="sam_vit_b@random", intra_op_threads=2)


@pytest.mark.parametrize(
    ("prompt", "multimask"),
    [
        (POSITIVE, True),
        (POSITIVE, False),
        (Prompt(points=np.array([[320.0, 240.0], [100.0, 50.0]]), point_labels=np.array([1, 0])), False),
        (Prompt(box=np.array([40.0, 30.0, 500.0, 400.0])), False),
        (Prompt(points=np.array([[320.0, 240.0]]), point_labels=np.array([0]), box=np.array([40, 30, 500, 400])), True),
    ],
)
def test_cached_onnx_decoder_matches_torch(
    decoder: MaskDecoder, cached_onnx_decoder: CachedOnnxMaskDecoder, prompt: Prompt, multimask: bool
) -> None:
    embedding = make_embedding(22)
    ours = decoder.decode(embedding, prompt, multimask=multimask)
    theirs = cached_onnx_decoder.decode(embedding, prompt, multimask=multimask)
    np.testing.assert_allclose(theirs.scores, ours.scores, atol=1e-4)
    np.testing.assert_allclose(theirs.low_res_logits, ours.low_res_logits, atol=1e-3)
    for k in range(len(ours.masks)):
        assert ours.masks[k].any()
        assert iou(theirs.masks[k], ours.masks[k]) >= 0.99


def test_cached_onnx_decoder_batches_refines_and_threads(
    decoder: MaskDecoder, cached_onnx_decoder: CachedOnnxMaskDecoder
) -> None:
    embedding = make_embedding(23)
    prompts = [Prompt(points=np.array([[60.0 * i, 45.0 * i]]), point_labels=np.array([1])) for i in range(1, 6)]
    batched = cached_onnx_decoder.decode_low_res(embedding, prompts, multimask=True, max_batch=4)
    for prompt, low in zip(prompts, batched, strict=True):
        np.testing.assert_allclose(
            low.logits, decoder.decode_batch(embedding, [prompt], multimask=True).logits, atol=1e-3
        )
    first = decoder.decode(embedding, prompts[0])
    refine = Prompt(points=prompts[0].points, point_labels=prompts[0].point_labels, mask_logits=first.low_res_logits)
    for theirs_prompt in (refine, Prompt(mask_logits=first.low_res_logits)):  # mask-only: the torch path
        np.testing.assert_allclose(
            cached_onnx_decoder.decode(embedding, theirs_prompt).low_res_logits,
            decoder.decode(embedding, theirs_prompt).low_res_logits,
            atol=1e-3,
        )
    with decode_threads(1):
        one_thread = cached_onnx_decoder.decode(embedding, prompts[1])
    assert 1 in cached_onnx_decoder._sessions
    np.testing.assert_allclose(
        one_thread.low_res_logits, cached_onnx_decoder.decode(embedding, prompts[1]).low_res_logits, atol=1e-5
    )
