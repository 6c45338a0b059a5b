"""A tiny random SAM 3 saved with ``save_pretrained`` (loaded by batchlabel exactly like a downloaded facebook/sam3).

Sizes from ``/work/shared/docs/model-families.md`` (14.8 M parameters, ~1.6 s per 1008-px image on 2 cores). The
processor's CLIP tokenizer is built from the BPE merges in the ``open_clip_torch`` wheel (same ids as SAM 3's own).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


def clip_tokenizer_files(bpe_gz: Path, out_dir: Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` (49,408 tokens) from CLIP's ``bpe_simple_vocab_16e6.txt.gz``."""
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab += [token + "</w>" for token in vocab]
    vocab += ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_file.write_text(json.dumps({token: index for index, token in enumerate(vocab)}), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def save_tiny_sam3(out_dir: Path, bpe_gz: Path, *, seed: int = 0) -> Path:
    """Write a tiny random SAM 3 (model + processor with the CLIP tokenizer) to ``out_dir``; returns it."""
    import torch
    from transformers import CLIPTokenizer, Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    data = Sam3Config().to_dict()
    backbone = data["vision_config"]["backbone_config"]
    backbone.update(hidden_size=96, intermediate_size=192, num_hidden_layers=4, num_attention_heads=2,
                    global_attn_indexes=[1, 3])
    data["text_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                               projection_dim=64)
    for key in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
        data[key].update(num_layers=1, intermediate_size=256)
    data["detr_decoder_config"]["num_queries"] = 20
    torch.manual_seed(seed)
    model = Sam3Model(Sam3Config(**data)).eval()
    model.save_pretrained(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = clip_tokenizer_files(bpe_gz, Path(tmp))
        tokenizer = CLIPTokenizer(str(vocab), str(merges))
    Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir
