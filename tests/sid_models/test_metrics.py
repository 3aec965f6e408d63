"""Ranking metrics against a direct per-row computation, the popularity baseline, and Spearman correlation."""

import math

import numpy as np
import pytest
import torch

from sid_models.metrics import popularity_scores, rank_metrics, spearman, target_ranks
from sid_models.sequences import SequenceData


def direct_metrics(scores: np.ndarray, targets: np.ndarray, ks=(5, 10)) -> dict[str, float]:
    """One row at a time: the target's 0-based rank is how many real items (index >= 1) score at least as high,
    itself excluded."""
    recall = {k: [] for k in ks}
    ndcg = {k: [] for k in ks}
    for row, target in zip(scores, targets):
        rank = sum(1 for item in range(1, len(row)) if item != target and row[item] >= row[target])
        for k in ks:
            recall[k].append(1.0 if rank < k else 0.0)
            ndcg[k].append(1.0 / math.log2(rank + 2) if rank < k else 0.0)
    return {name: float(np.mean(values[k])) for k in ks
            for name, values in ((f"recall@{k}", recall), (f"ndcg@{k}", ndcg))}


def test_rank_metrics_match_direct_computation():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 31)).astype(np.float32)
    scores[:, 0] = 100.0  # padding column must never outrank anything
    targets = rng.integers(1, 31, size=200)
    # Make a good share of the targets land in the top 10.
    boost = rng.random(200) < 0.4
    scores[boost, targets[boost]] += 2.0
    got = rank_metrics(torch.from_numpy(scores), torch.from_numpy(targets), ks=(1, 5, 10))
    expected = direct_metrics(scores, targets, ks=(1, 5, 10))
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    assert 0 < got["recall@5"] < got["recall@10"] < 1


def test_hand_computed_example():
    # Items 1..4 score 0.1, 0.9, 0.5, 0.7: rank of item 3 is 2 (behind items 2 and 4), of item 2 is 0.
    scores = torch.tensor([[9.0, 0.1, 0.9, 0.5, 0.7], [9.0, 0.1, 0.9, 0.5, 0.7]])
    ranks = target_ranks(scores, torch.tensor([3, 2]))
    assert ranks.tolist() == [2, 0]
    metrics = rank_metrics(scores, torch.tensor([3, 2]), ks=(1, 5))
    assert metrics["recall@1"] == 0.5
    assert metrics["ndcg@1"] == 0.5
    assert metrics["recall@5"] == 1.0
    assert metrics["ndcg@5"] == pytest.approx((1 / math.log2(4) + 1.0) / 2)


def test_ties_count_against_the_target():
    scores = torch.zeros(3, 21)
    assert target_ranks(scores, torch.tensor([1, 7, 20])).tolist() == [19, 19, 19]
    assert rank_metrics(scores, torch.tensor([1, 7, 20]))["recall@10"] == 0.0


def test_popularity_scores_count_train_items():
    train = SequenceData.from_arrays(np.array([0, 0, 0, 1, 1]), np.array([2, 3, 2, 2, 4]), n_items=5)
    scores = popularity_scores(train)
    assert scores.tolist() == [float("-inf"), 0.0, 3.0, 1.0, 1.0, 0.0]
    # Item 2 is ranked first for everyone; items 3 and 4 tie, so each ranks behind the other.
    assert target_ranks(scores.expand(3, -1), torch.tensor([2, 3, 4])).tolist() == [0, 2, 2]


def test_spearman():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # With ties: average ranks of y = [1, 2.5, 2.5, 4, 5] (0-based: 0, 1.5, 1.5, 3, 4); Pearson by hand.
    y = np.array([10.0, 20.0, 20.0, 30.0, 40.0])
    rx = np.array([0, 1, 2, 3, 4]) - 2.0
    ry = np.array([0, 1.5, 1.5, 3, 4]) - 2.0
    assert spearman(x[::-1], y) == pytest.approx(-(rx * ry).sum() / np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))
    assert math.isnan(spearman(x, np.ones(5)))
    with pytest.raises(ValueError):
        spearman(x, x[:3])
