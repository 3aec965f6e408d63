"""AUC and GAUC for the ranking model (ADC-SID section 4.1.2), overall and per item popularity bucket.

AUC is the Mann-Whitney statistic with tied scores counted as half-correct (average ranks). GAUC averages each
user's AUC weighted by the user's number of rows; users whose rows are all positive or all negative have no AUC
and are left out of both the sum and the weights. Both are vectorised: one sort for AUC, one for GAUC.
"""

from __future__ import annotations

import numpy as np


def _average_ranks(keys: tuple[np.ndarray, ...], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, 1-based rank of each sorted row inside its group) where groups are runs of equal `keys` and rows
    with equal scores inside a group share the average of their ranks. `order` sorts by keys, then score."""
    order = np.lexsort((scores, *keys[::-1])) if keys else np.argsort(scores, kind="stable")
    n = len(scores)
    sorted_scores = scores[order]
    new_group = np.zeros(n, dtype=bool)
    new_group[:1] = True
    for key in keys:
        sorted_key = key[order]
        new_group[1:] |= sorted_key[1:] != sorted_key[:-1]
    new_tie = new_group.copy()
    new_tie[1:] |= sorted_scores[1:] != sorted_scores[:-1]
    position = np.arange(n, dtype=np.float64)
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    tie_id = np.cumsum(new_tie) - 1
    tie_first = position[new_tie]
    tie_last = np.append(tie_first[1:], n) - 1
    ranks = (tie_first + tie_last)[tie_id] / 2 - group_start + 1
    return order, ranks


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D and of one length, got {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are not finite")
    return labels.astype(bool), scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties: one half); NaN when one class
    is missing."""
    labels, scores = _check(labels, scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order, ranks = _average_ranks((), scores)
    return float((ranks[labels[order]].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """sum_u n_u AUC_u / sum_u n_u over users with both classes, n_u the user's rows; NaN when no user has both."""
    labels, scores = _check(labels, scores)
    _, user_index = np.unique(np.asarray(users), return_inverse=True)
    order, ranks = _average_ranks((user_index,), scores)
    sorted_users, sorted_labels = user_index[order], labels[order]
    n_users = int(user_index.max()) + 1 if len(user_index) else 0
    rows = np.bincount(sorted_users, minlength=n_users).astype(np.float64)
    n_pos = np.bincount(sorted_users, weights=sorted_labels, minlength=n_users)
    n_neg = rows - n_pos
    pos_rank_sum = np.bincount(sorted_users, weights=np.where(sorted_labels, ranks, 0.0), minlength=n_users)
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    per_user = (pos_rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2) / (n_pos[both] * n_neg[both])
    return float((rows[both] * per_user).sum() / rows[both].sum())


def ranking_metrics(users: np.ndarray, labels: np.ndarray, scores: np.ndarray, buckets: np.ndarray,
                    bucket_names: tuple[str, ...] = ("head", "tail")) -> dict[str, float]:
    """auc and gauc over every row, and auc_<bucket> / gauc_<bucket> over the rows whose item is in the bucket
    (`buckets` holds each row's item popularity bucket)."""
    users, labels, scores, buckets = (np.asarray(a) for a in (users, labels, scores, buckets))
    metrics = {"auc": auc(labels, scores), "gauc": gauc(users, labels, scores), "rows": int(len(labels))}
    for name in bucket_names:
        rows = buckets == name
        metrics[f"auc_{name}"] = auc(labels[rows], scores[rows])
        metrics[f"gauc_{name}"] = gauc(users[rows], labels[rows], scores[rows])
        metrics[f"rows_{name}"] = int(rows.sum())
    return metrics
