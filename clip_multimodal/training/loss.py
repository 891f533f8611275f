"""The CLIP training objective (Radford et al. 2021, section 2.3 and figure 3).

Both towers' projections are L2-normalized; logits are their cosine similarities times exp(t),
a learned temperature kept at or below 100 as CLIP does; the loss is the mean of the
cross-entropies over rows (image -> text) and columns (text -> image). The arithmetic is
open_clip's `ClipLoss`, so what we train matches what open_clip trains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

__all__ = ["MAX_LOGIT_SCALE", "clamp_logit_scale", "clip_loss"]

#: CLIP clips the temperature so logits are scaled by at most 100 (training stays stable).
MAX_LOGIT_SCALE = 100.0
_MAX_LOG_SCALE = math.log(MAX_LOGIT_SCALE)


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """The symmetric contrastive loss of a batch of aligned pairs.

    Args:
        image_features: (n, d) image projections I_f W_i; normalized here.
        text_features: (n, d) text projections T_f W_t, row i paired with image i.
        log_scale: the learned temperature t (a scalar tensor); logits are scaled by
            exp(min(t, ln 100)).

    Returns:
        A scalar tensor: (CE over rows + CE over columns) / 2.
    """
    images = F.normalize(image_features, dim=-1)
    texts = F.normalize(text_features, dim=-1)
    scale = log_scale.clamp(max=_MAX_LOG_SCALE).exp()
    loss: torch.Tensor = ClipLoss()(images, texts, scale)
    return loss


@torch.no_grad()
def clamp_logit_scale(model: torch.nn.Module) -> None:
    """Keep the model's temperature in [0, ln 100] after an optimizer step, as open_clip does."""
    logit_scale = getattr(model, "logit_scale", None)
    if isinstance(logit_scale, torch.Tensor):
        logit_scale.clamp_(0, _MAX_LOG_SCALE)
