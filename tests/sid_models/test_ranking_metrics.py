"""AUC against scikit-learn, GAUC against a hand-worked example, and per-bucket metrics."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from sid_models.ranking_metrics import auc, gauc, ranking_metrics


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    labels[:2] = [0, 1]
    scores = rng.normal(size=200) + labels
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    tied = np.round(scores)  # few distinct values: many ties
    assert auc(labels, tied) == pytest.approx(roc_auc_score(labels, tied), abs=1e-12)


def test_auc_edge_cases():
    assert auc([0, 1], [0.1, 0.9]) == 1.0 and auc([1, 0], [0.1, 0.9]) == 0.0
    assert auc([0, 1, 0, 1], [0.5] * 4) == 0.5  # a constant scorer is at chance
    assert np.isnan(auc([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="not finite"):
        auc([0, 1], [0.1, np.nan])


def test_gauc_hand_worked_example():
    # User a: 3 rows, positive 0.9 above both negatives (0.3, 0.5): AUC 1.
    # User b: 4 rows, positives 0.2 and 0.6, negatives 0.4 and 0.6: pairs (0.2,0.4)=0, (0.2,0.6)=0,
    #   (0.6,0.4)=1, (0.6,0.6)=0.5, so AUC 1.5 / 4 = 0.375.
    # User c: one class only, excluded.  GAUC = (3 * 1 + 4 * 0.375) / (3 + 4) = 4.5 / 7.
    users = ["a", "a", "a", "b", "b", "b", "b", "c", "c"]
    labels = [1, 0, 0, 1, 1, 0, 0, 1, 1]
    scores = [0.9, 0.3, 0.5, 0.2, 0.6, 0.4, 0.6, 0.1, 0.7]
    assert gauc(users, labels, scores) == pytest.approx(4.5 / 7, abs=1e-12)
    # Row order does not matter.
    order = np.random.default_rng(0).permutation(len(users))
    assert gauc(np.array(users)[order], np.array(labels)[order], np.array(scores)[order]) == \
        pytest.approx(4.5 / 7, abs=1e-12)


def test_gauc_equals_per_user_sklearn_average():
    rng = np.random.default_rng(7)
    users = rng.integers(0, 30, 600)
    labels = rng.integers(0, 2, 600)
    scores = np.round(rng.normal(size=600) + labels, 1)
    total = weight = 0.0
    for user in np.unique(users):
        rows = users == user
        if len(np.unique(labels[rows])) == 2:
            total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
            weight += rows.sum()
    assert gauc(users, labels, scores) == pytest.approx(total / weight, abs=1e-12)


def test_ranking_metrics_by_bucket():
    users = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3])
    buckets = np.array(["head", "head", "tail", "tail", "head", "mid"])
    metrics = ranking_metrics(users, labels, scores, buckets)
    assert metrics["auc_head"] == 1.0 and metrics["auc_tail"] == 0.0
    assert metrics["rows_head"] == 3 and metrics["rows_tail"] == 2 and metrics["rows"] == 6
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores))
