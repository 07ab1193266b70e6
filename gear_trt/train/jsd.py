"""AugMix's Jensen-Shannon consistency loss (Hendrycks et al., ICLR 2020), for ERA with jsd=True.

    JS(p_clean, p_aug1, p_aug2) = (KL(p_clean || M) + KL(p_aug1 || M) + KL(p_aug2 || M)) / 3,
    M = (p_clean + p_aug1 + p_aug2) / 3,

averaged over the batch, with M clamped to [1e-7, 1] before its log as in AugMix's reference code.
The training loss is cross-entropy on the clean logits plus `weight` (12 in AugMix) times JS.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

JSD_WEIGHT = 12.0  # AugMix's lambda


def jsd_loss(logits_clean: torch.Tensor, logits_aug1: torch.Tensor, logits_aug2: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence among the three softmax distributions, batch mean (a scalar >= 0)."""
    probs = [F.softmax(logits.float(), dim=1) for logits in (logits_clean, logits_aug1, logits_aug2)]
    log_mixture = torch.clamp((probs[0] + probs[1] + probs[2]) / 3.0, 1e-7, 1.0).log()
    kl = [F.kl_div(log_mixture, p, reduction="batchmean") for p in probs]
    return (kl[0] + kl[1] + kl[2]) / 3.0


def era_loss(logits_clean: torch.Tensor, logits_aug1: torch.Tensor, logits_aug2: torch.Tensor,
             targets: torch.Tensor, weight: float = JSD_WEIGHT) -> torch.Tensor:
    """AugMix's training loss: cross-entropy on the clean view + weight * JSD over the three views.

    Run the model once on torch.cat([clean, aug1, aug2]) and split the logits with `.chunk(3)`.
    """
    return F.cross_entropy(logits_clean, targets) + weight * jsd_loss(logits_clean, logits_aug1, logits_aug2)


def era_views_loss(model: torch.nn.Module, x: Union[torch.Tensor, Sequence[torch.Tensor]], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A `loss_fn` for `train()` on ERA's (clean, aug1, aug2) views: one forward pass over the three,
    AugMix's loss, and the clean view's logits (for the training accuracy)."""
    clean, aug1, aug2 = model(torch.cat(tuple(x))).chunk(3)
    return era_loss(clean, aug1, aug2, y), clean
