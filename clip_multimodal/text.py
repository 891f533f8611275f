"""The text tower: tokenization, truncation warnings, and the exact trimmed forward.

CLIP pads every caption to the context length (77). Under a causal mask a position never attends
to later ones, and argmax/EOT pooling reads a position before the padding, so running only the
first L positions (L = the batch's longest sequence) gives the same output. We trim only where
that holds: a causal tower with argmax or EOS pooling and no appended CLS token. SigLIP-style
towers (bidirectional, last-token pooling) and Hugging Face towers keep their full padding.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "MAX_TOKEN_CHARS",
    "Template",
    "TextTower",
    "fill_template",
    "head_of_text",
    "tokenize",
    "trimmed_length",
]

#: A prompt template: a str with one `{}` where the label goes, or a function of the label.
Template = str | Callable[[str], str]

#: Characters one token can cover, with room to spare: CLIP's longest BPE token is 32
#: characters, plus the space before the next word (tests check the vocabulary against it).
MAX_TOKEN_CHARS = 48

_WHITESPACE = re.compile(r"\s+")


class TextTower:
    """Wraps a model's text path, choosing the trimmed forward where it is exact."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.parts = _trimmable_parts(model)

    @property
    def trims(self) -> bool:
        # A family's towers may trim by themselves (transformers' masked CLIP and BERT towers).
        return self.parts is not None or bool(getattr(self.model, "trims_padding", False))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.parts is None:
            out: torch.Tensor = self.model.encode_text(tokens)  # type: ignore[operator]
            return out
        module, pool_type, eos_id = self.parts
        return _encode_trimmed(module, tokens, pool_type, eos_id)


def _trimmable_parts(model: Any) -> tuple[Any, str, int | None] | None:
    """(module holding the text layers, pool type, eos id) when trimming is exact, else None."""
    from open_clip.model import CLIP
    from open_clip.transformer import TextTransformer

    if isinstance(model, CLIP):
        module = model
        pool, eos = model.text_pool_type, getattr(model, "text_eos_id", None)
    elif isinstance(getattr(model, "text", None), TextTransformer):
        text = model.text
        if text.cls_emb is not None or text.use_pad_mask:
            return None
        module, pool, eos = text, text.pool_type, text.eos_id
    else:
        return None
    if getattr(module, "attn_mask", None) is None or pool not in ("argmax", "eos"):
        return None
    return module, str(pool), eos


def trimmed_length(tokens: torch.Tensor, pool_type: str, eos_id: int | None) -> int:
    """The number of leading positions the pooled output depends on, for the whole batch."""
    if tokens.shape[0] == 0:
        return 1
    if pool_type == "eos":
        pooled_at = torch.eq(tokens, int(eos_id or 0)).int().argmax(dim=-1)
    else:
        pooled_at = tokens.argmax(dim=-1)
    return int(pooled_at.max()) + 1


def _encode_trimmed(
    module: Any, tokens: torch.Tensor, pool_type: str, eos_id: int | None
) -> torch.Tensor:
    from open_clip.transformer import text_global_pool

    length = trimmed_length(tokens, pool_type, eos_id)
    tokens = tokens[:, :length]
    cast_dtype = module.transformer.get_cast_dtype()
    x = module.token_embedding(tokens).to(cast_dtype)
    x = x + module.positional_embedding[:length].to(cast_dtype)
    x = module.transformer(x, attn_mask=module.attn_mask[:length, :length])
    x = module.ln_final(x)
    x = text_global_pool(x, tokens, pool_type, eos_token_id=eos_id)
    projection = module.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, nn.Linear) else x @ projection
    out: torch.Tensor = x
    return out


def head_of_text(text: str, context_length: int) -> str:
    """The part of `text` a tokenizer can reach within `context_length` tokens, with margin.

    Tokenizing cost grows with the whole text while the model reads only its first tokens, so
    a long text is cut first. Whitespace runs are collapsed before the cut, as CLIP's own
    cleaner does, so padding cannot push words out; a text short enough is left as it is.
    """
    limit = context_length * MAX_TOKEN_CHARS
    if len(text) <= limit:
        return text
    span = 2 * limit
    while True:  # collapse only a prefix; widen it while whitespace runs eat it up
        head = _WHITESPACE.sub(" ", text[:span])
        if len(head) > limit or span >= len(text):
            return head[:limit]
        span *= 4


def tokenize(tokenizer: Any, texts: Sequence[str], context_length: int) -> torch.Tensor:
    """Tokenize, warning once per call when any text is longer than the context length."""
    heads = [head_of_text(text, context_length) for text in texts]
    tokens: torch.Tensor = tokenizer(heads)
    full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
    encode = getattr(tokenizer, "encode", None)
    if encode is not None and full:
        # A cut text overflows for sure; others are counted (SimpleTokenizer adds 2 tokens,
        # [CLS] and [SEP] too; a family's tokenizer may say otherwise: SigLIP adds only </s>).
        specials = int(getattr(tokenizer, "num_special_tokens", 2))
        full = [
            i
            for i in full
            if len(heads[i]) < len(texts[i]) or len(encode(heads[i])) + specials > context_length
        ]
    if full:
        warnings.warn(
            f"{len(full)} text(s) longer than the model's context length ({context_length} "
            f"tokens) were truncated, e.g. {texts[full[0]][:60]!r}",
            UserWarning,
            stacklevel=3,
        )
    return tokens


def fill_template(template: Template, label: str) -> str:
    """A prompt: the label in place of the template's one `{}` (never `str.format`).

    Raises:
        TemplateError: a str template without exactly one `{}`, or with any other brace.
    """
    if callable(template):
        return template(label)
    head, sep, tail = template.partition("{}")
    if not sep or any(brace in head + tail for brace in "{}"):
        from clip_multimodal.errors import TemplateError

        raise TemplateError(
            f"template {template[:80]!r} must contain exactly one {{}} where the label goes "
            "and no other braces, e.g. 'a photo of a {}.'"
        )
    return head + label + tail
