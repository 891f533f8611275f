"""Tiny random-weight checkpoints of the other CLIP families, written in their own formats.

- transformers folders (`save_pretrained`) of CLIPModel, SiglipModel and ChineseCLIPModel, with
  tokenizer and image-processor files built offline: CLIP's BPE vocabulary from open_clip's
  copy, the Chinese BERT vocabulary from cn_clip's copy; SigLIP's sentencepiece model is not
  shipped anywhere offline (and `sentencepiece` is not installed), so its folder carries a
  small Unigram tokenizer (the `tokenizers` library's sentencepiece model, with </s> appended
  and used as padding, as SigLIP's).
- a cn_clip checkpoint of its smallest architecture (RN50 with the 3-layer RBT3 text tower),
  saved as its training saves one: {"epoch", "step", "name", "state_dict" with DDP's
  "module." prefix}.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

TINY_VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64}
TINY_LAYERS = {"num_hidden_layers": 2, "num_attention_heads": 2}


def _clip_vocab_files(folder: Path) -> None:
    """vocab.json and merges.txt for CLIPTokenizer, from open_clip's BPE file."""
    import open_clip.tokenizer as oct

    with gzip.open(oct.default_bpe()) as f:  # as SimpleTokenizer reads it
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    tokenizer = oct.SimpleTokenizer()
    vocab = dict(tokenizer.encoder)
    del vocab["<start_of_text>"], vocab["<end_of_text>"]
    vocab.update({"<|startoftext|>": 49406, "<|endoftext|>": 49407})
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )


def save_hf_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    _clip_vocab_files(folder)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(folder)
    text = {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 77,
        **TINY_LAYERS,
    }
    config = CLIPConfig(
        text_config=text, vision_config={**TINY_VISION, **TINY_LAYERS}, projection_dim=24
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def save_hf_chinese_clip(folder: Path, seed: int = 0) -> Path:
    from cn_clip.clip import bert_tokenizer
    from transformers import (
        BertTokenizer,
        ChineseCLIPConfig,
        ChineseCLIPImageProcessor,
        ChineseCLIPModel,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = Path(bert_tokenizer.__file__).parent / "vocab.txt"
    tokenizer = BertTokenizer(str(vocab), model_max_length=52)
    tokenizer.save_pretrained(folder)
    text = {
        "vocab_size": 21128,
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        **TINY_LAYERS,
    }
    config = ChineseCLIPConfig(
        text_config=text, vision_config={**TINY_VISION, **TINY_LAYERS}, projection_dim=24
    )
    torch.manual_seed(seed)
    ChineseCLIPModel(config).save_pretrained(folder)
    ChineseCLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


def _unigram_tokenizer(context_length: int) -> Any:
    """A small sentencepiece-style (Unigram, Metaspace) tokenizer that ends texts with </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["</s>", "<unk>"]
    words = ["a", "red", "circle", "blue", "square", "green", "photo", "of", "the", "cat", "dog"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = [(p, 0.0) for p in pieces] + [("\u2581" + w, -2.0) for w in words]
    vocab += [("\u2581", -3.0)] + [(c, -5.0) for c in letters]
    backend = Tokenizer(models.Unigram(vocab, unk_id=1))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=context_length,
    )


def save_hf_siglip(folder: Path, seed: int = 0) -> Path:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _unigram_tokenizer(64)
    tokenizer.save_pretrained(folder)
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
        "projection_size": 32,
        "pad_token_id": 0,
        "eos_token_id": 0,
        "bos_token_id": None,
        **TINY_LAYERS,
    }
    config = SiglipConfig(text_config=text, vision_config={**TINY_VISION, **TINY_LAYERS})
    torch.manual_seed(seed)
    SiglipModel(config).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def save_cn_clip_checkpoint(path: Path, arch: str = "RN50", seed: int = 0) -> Path:
    """A random cn_clip checkpoint of `arch`, in fp16 as its released checkpoints are."""
    import contextlib
    import io

    from cn_clip.clip.utils import _MODEL_INFO, create_model

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = create_model(_MODEL_INFO[arch]["struct"])  # fp16 weights (convert_weights)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "step": 1, "name": "random", "state_dict": state}, path)
    return path
