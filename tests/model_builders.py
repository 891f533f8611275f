"""Tiny random-weight open_clip models in local-dir format, for plumbing tests only.

Retrieval quality is always tested on the real demo model; these exist to cover tower kinds the
demo model is not (SigLIP-style bidirectional text, Hugging Face text towers).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

TINY_VISION = {
    "image_size": 32,
    "patch_size": 8,
    "width": 64,
    "layers": 2,
    "head_width": 32,
    "mlp_ratio": 2.0,
}
TINY_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}


def save_model_dir(out: Path, model_cfg: dict[str, Any], name: str = "tiny", seed: int = 0) -> Path:
    """Build a random model from `model_cfg`, save it as open_clip's local-dir, return the dir."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = copy.deepcopy(model_cfg)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    cls = open_clip.CustomTextCLIP if custom else open_clip.CLIP
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["text_cfg"]["hf_model_pretrained"] = False  # build from config; weights saved below
    model = cls(**copy.deepcopy(cfg))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    config = {"model_name": name, "model_cfg": model_cfg, "preprocess_cfg": {}}
    (out / "open_clip_config.json").write_text(json.dumps(config))
    return out


def causal_cfg() -> dict[str, Any]:
    return {"embed_dim": 32, "vision_cfg": dict(TINY_VISION), "text_cfg": dict(TINY_TEXT)}


def siglip_style_cfg() -> dict[str, Any]:
    """Bidirectional text tower with last-token pooling: trimming would change outputs."""
    text = dict(TINY_TEXT, no_causal_mask=True, pool_type="last")
    return {"embed_dim": 32, "vision_cfg": dict(TINY_VISION), "text_cfg": text, "custom_text": True}


def hf_text_cfg(hf_dir: Path) -> dict[str, Any]:
    text = {
        "hf_model_name": str(hf_dir),
        "hf_tokenizer_name": str(hf_dir),
        "hf_proj_type": "linear",
        "hf_pooler_type": "mean_pooler",
        "context_length": 16,
    }
    return {"embed_dim": 32, "vision_cfg": dict(TINY_VISION), "text_cfg": text, "custom_text": True}


def save_tiny_bert(out: Path) -> Path:
    """A tiny BERT config and WordPiece vocab on disk, so an HF text tower builds offline."""
    from transformers import BertConfig

    out.mkdir(parents=True, exist_ok=True)
    words = [
        "a",
        "an",
        "the",
        "red",
        "green",
        "blue",
        "circle",
        "square",
        "triangle",
        "small",
        "large",
        "photo",
        "of",
        "dog",
        "cat",
    ]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    ).save_pretrained(out)
    _save_wordpiece_tokenizer(out, vocab)
    return out


def _save_wordpiece_tokenizer(out: Path, vocab: list[str]) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])]
    )
    tok.save(str(out / "tokenizer.json"))
    special = {
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
