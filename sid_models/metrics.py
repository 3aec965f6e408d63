"""Full-catalogue ranking metrics for next-item prediction, a popularity baseline, and Spearman correlation.

Score matrices have n_items + 1 columns indexed by item; column 0 is padding and never ranked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sid_models.sequences import SequenceData


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among items 1..n_items. Ties count against the target, so a constant
    scorer ranks every target last rather than first."""
    target_scores = scores.gather(1, targets[:, None])
    return (scores[:, 1:] >= target_scores).sum(dim=1) - 1


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """recall@k (hit rate: one target per row) and ndcg@k = 1 / log2(rank + 2) inside the top k, averaged."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"recall@{k}"] = hit.double().mean().item()
        metrics[f"ndcg@{k}"] = (hit / torch.log2(ranks + 2)).mean().item()
    return metrics


def rank_metrics(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """scores (B, n_items + 1), targets (B,) item indices -> {"recall@k", "ndcg@k"} over the full catalogue."""
    return metrics_from_ranks(target_ranks(scores, targets), ks)


def popularity_scores(train: SequenceData) -> torch.Tensor:
    """(n_items + 1,) train interaction counts per item, the same for every user; padding scores -inf."""
    scores = torch.from_numpy(np.bincount(train.items, minlength=train.n_items + 1).astype(np.float32))
    scores[0] = float("-inf")
    return scores


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their ranks."""
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(group, weights=ranks) / counts)[group]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN when either input is constant."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must have the same length")
    rx, ry = _average_ranks(x) - (len(x) - 1) / 2, _average_ranks(y) - (len(y) - 1) / 2
    denominator = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def popularity_metrics(train: SequenceData, targets: np.ndarray, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """Metrics of ranking every target by train popularity (the same list for every user), computed from
    the sorted counts rather than a (users x items) score matrix."""
    counts = popularity_scores(train)[1:].numpy()
    target_counts = counts[np.asarray(targets) - 1]
    at_least = len(counts) - np.searchsorted(np.sort(counts), target_counts, side="left")  # ties count against
    return metrics_from_ranks(torch.from_numpy(at_least - 1), ks)
