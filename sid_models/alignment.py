"""ADC-SID's adaptive behavior-content alignment (paper section 3.3, eq. 15-21) and the ReMoE-style load balancing
of the behavioral weighting gate (section 3.4.2, eq. 23), as small pure functions of tensors.

Conventions: "per-row" losses have one value per item of the batch (so a per-item weight w can scale them) and
callers take the mean over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def norm_normalise(norms: torch.Tensor, n_min: float, n_max: float) -> torch.Tensor:
    """Eq. 15-16: behavior-embedding L2 norms mapped to [0, 1] with the catalogue's min and max norm (fixed at fit
    time). Items encoded later may fall outside the fitted range, so the result is clamped to [0, 1]."""
    span = float(n_max) - float(n_min)
    if span <= 0:
        # Every fitted item had the same norm: there is nothing to tell head from tail, so treat all as reliable.
        return torch.ones_like(norms)
    return ((norms - float(n_min)) / span).clamp(0.0, 1.0)


def alignment_strength(n_norm: torch.Tensor, alpha: float = 10.0, beta: float = 9.0) -> torch.Tensor:
    """Eq. 17: w = sigmoid(alpha * n - beta) / sigmoid(alpha - beta); w(1) = 1 and w rises monotonically in n.
    alpha sets the steepness, beta / alpha the norm below which an item counts as long-tail."""
    return torch.sigmoid(alpha * n_norm - beta) / (1.0 / (1.0 + math.exp(-(alpha - beta))))


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Eq. 18-19: per-row -log softmax of cosine similarities / tau, where row i of `positive` is the positive of
    anchor i and the other rows of `positive` are its in-batch negatives. Returns [B] losses."""
    logits = F.normalize(anchor.float(), dim=1) @ F.normalize(positive.float(), dim=1).T / tau
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device), reduction="none")


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Eq. 20: content-content alignment, both directions summed. One similarity matrix serves both: its rows
    give a -> b and its columns b -> a. Returns [B] losses."""
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / tau
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target, reduction="none")
            + F.cross_entropy(logits.T, target, reduction="none"))


def total_alignment(content: dict[str, torch.Tensor], behavior: torch.Tensor, w: torch.Tensor,
                    tau: float = 0.07) -> torch.Tensor:
    """Eq. 21 generalised to any number of content modalities: the symmetric loss of every pair of content
    modalities plus, per item, w times the behavior-content loss of every content modality (content hidden
    states as anchors, behavior hidden states as positives and negatives, as in eq. 18). Mean over the batch."""
    names = list(content)
    per_row = torch.zeros(len(behavior), device=behavior.device)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            per_row = per_row + symmetric_info_nce(content[first], content[second], tau)
        per_row = per_row + w * info_nce(content[first], behavior, tau)
    return per_row.mean()


# ---- Load balancing of the relu router R(e_b) (eq. 23, following ReMoE, Wang et al. 2025) ----
#
# ReMoE trains a relu router with an L1 penalty lambda * mean_t sum_j R_tj whose coefficient adapts each step:
# lambda <- lambda * alpha ** sign(target_sparsity - sparsity), sparsity = fraction of exact zeros in R. The
# penalty therefore pushes R toward the target share of inactive (item, expert) pairs and relaxes once it is
# reached, instead of needing a hand-tuned weight. ReMoE's load-balancing variant (the f_lb of eq. 23) weights
# each expert's L1 term by its detached activation frequency f_j = N / (k B) * #{t: R_tj > 0}, with
# k = (1 - target) N the active experts per item at the target, so over-used experts are pushed down harder and
# no expert is starved; at a balanced target load every f_j = 1 and it equals the plain L1 penalty.


def activation_sparsity(r: torch.Tensor) -> float:
    """Fraction of the entries of R [B, N] that are exactly zero (relu off)."""
    return float((r == 0).float().mean()) if r.numel() else 0.0


def load_balancing_loss(r: torch.Tensor, lam: float, target_sparsity: float = 0.5,
                        balanced: bool = True) -> torch.Tensor:
    """Eq. 23: lam * (1/B) sum_t sum_j f_j |R_tj|, with f_j the ReMoE load weights when `balanced`, else f_j = 1."""
    per_expert = r.abs().mean(dim=0)  # [N]: (1/B) sum_t |R_tj|
    if balanced:
        n_experts = r.shape[1]
        active_per_item = max((1.0 - target_sparsity) * n_experts, 1e-6)
        load = (r.detach() > 0).float().mean(dim=0) * n_experts / active_per_item
        per_expert = per_expert * load
    return lam * per_expert.sum()


def update_lb_lambda(lam: float, sparsity: float, target_sparsity: float = 0.5, alpha: float = 1.2,
                     floor: float = 0.0) -> float:
    """ReMoE's multiplicative controller: grow lambda while R is denser than the target, shrink it while sparser.
    `floor` bounds the shrinking: when the reconstruction alone keeps R sparser than the target for many steps,
    an unbounded lambda winds down by orders of magnitude and then needs as many steps to act again."""
    direction = (target_sparsity > sparsity) - (target_sparsity < sparsity)
    return max(lam * alpha ** direction, floor)
