"""The PPNet ranker's parts (gates, masking, importance weighting, feature sets), negative sampling, and a ranker
that beats popularity on a planted catalogue."""

import numpy as np
import pytest
import torch

from sid_models.ranking import PPNetRanker, RankerConfig
from sid_models.ranking_data import ItemFeatures, interaction_keys, labelled_rows, recent_items, sample_negatives
from sid_models.ranking_metrics import auc
from sid_models.train_ranking import RankerInputs, RankerTrainConfig, predict, train_ranker

SIZES = [8, 8, 5]


def inputs(batch=32, seed=0, history=5):
    """(user, item, codes, weights, history index, history codes, history weights) of a random batch."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 10, (batch,), generator=g), torch.randint(0, 20, (batch,), generator=g),
            torch.stack([torch.randint(0, size, (batch,), generator=g) for size in SIZES], dim=1),
            torch.rand(batch, len(SIZES), generator=g), torch.randint(0, 20, (batch, history), generator=g),
            torch.stack([torch.randint(0, size, (batch, history), generator=g) for size in SIZES], dim=2),
            torch.rand(batch, history, len(SIZES), generator=g))


def test_gates_lie_in_zero_two_with_one_per_hidden_unit():
    torch.manual_seed(0)
    model = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES, hidden=[32, 16]))
    gates = model.gate_values(*inputs())
    assert [g.shape for g in gates] == [(32, 32), (32, 16)]
    assert all(((g > 0) & (g < 2)).all() for g in gates)
    assert model(*inputs()).shape == (32,)


def test_gate_gradients_do_not_reach_item_embeddings():
    torch.manual_seed(0)
    model = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES))
    sum(g.sum() for g in model.gate_values(*inputs())).backward()
    assert model.user_embedding.weight.grad.abs().sum() > 0
    assert model.sid_embedding.weight.grad is None or model.sid_embedding.weight.grad.abs().sum() == 0


def test_weights_scale_each_position_and_unknown_codes_are_masked():
    torch.manual_seed(0)
    model = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES))
    user, item, codes, weights, *history = inputs()
    features = model.item_features(item, codes, weights)
    d = model.config.embedding_dim
    expected = model.sid_embedding.weight[SIZES[0] + SIZES[1] + 3 + codes[:, 2]] * weights[:, 2:3]  # position 2's block
    assert torch.allclose(features[:, 2 * d:3 * d], expected)
    masked = codes.clone()
    masked[:, 1] = -1
    assert torch.equal(model.item_features(item, masked, weights)[:, d:2 * d], torch.zeros(32, d))
    zero = weights.clone()
    zero[:, 0] = 0
    other = codes.clone()
    other[:, 0] = (codes[:, 0] + 1) % SIZES[0]
    model.eval()  # dropout off
    assert torch.allclose(model(user, item, codes, zero, *history), model(user, item, other, zero, *history))


def test_dot_interaction_adds_a_user_item_term():
    torch.manual_seed(0)
    config = RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES, dot_interaction=False)
    plain = PPNetRanker(config).eval()
    assert plain.item_projection is None and plain.history_projection is None
    with_dot = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES)).eval()
    with_dot.load_state_dict(plain.state_dict(), strict=False)  # same weights; only the projections are new
    batch = inputs()
    user, item, codes, weights = batch[:4]
    taste = with_dot.user_embedding(user) + with_dot.history_projection(with_dot.pooled_history(*batch[4:]))
    term = (taste * with_dot.item_projection(with_dot.item_features(item, codes, weights))).sum(dim=1)
    assert torch.allclose(with_dot(*batch), plain(*batch) + term, atol=1e-6)


def test_history_is_the_mean_of_present_items_and_can_be_switched_off():
    torch.manual_seed(0)
    model = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES)).eval()
    batch = inputs(4, history=3)
    index, codes, weights = (t.clone() for t in batch[4:])
    index[0, 1:], codes[0, 1:] = 0, -1  # row 0: one item, then "none"
    pooled = model.pooled_history(index, codes, weights)
    assert torch.allclose(pooled[0], model.item_features(index[0, :1], codes[0, :1], weights[0, :1])[0])
    expected = model.item_features(index[1], codes[1], weights[1]).mean(dim=0)
    assert torch.allclose(pooled[1], expected, atol=1e-6)
    index[2], codes[2] = 0, -1  # no history at all: zeros
    assert torch.equal(model.pooled_history(index, codes, weights)[2], torch.zeros(model.item_dim))
    off = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES, history_length=0)).eval()
    assert off.pooled_history(*batch[4:]) is None and off.layers[0].in_features == 16 + 3 * 16
    assert off(*batch).shape == (4,)


def test_bag_features_sum_each_positions_weighted_rows():
    torch.manual_seed(0)
    model = PPNetRanker(RankerConfig(n_users=10, n_items=20, codebook_sizes=SIZES))
    codes = torch.stack([torch.randint(0, size, (5, 4)) for size in SIZES], dim=2)  # [B=5, H=4, L=3]
    codes[0, 2, 1] = -1  # an unknown code adds nothing
    weights = torch.rand(5, 4, 3)
    d, offset, expected = model.config.embedding_dim, 0, torch.zeros(5, 3 * model.config.embedding_dim)
    for position, size in enumerate(SIZES):
        table = model.sid_embedding.weight[offset + 1:offset + 1 + size]  # after the position's blank row
        offset += size + 1
        for b in range(5):
            for h in range(4):
                if codes[b, h, position] >= 0:
                    expected[b, position * d:(position + 1) * d] += weights[b, h, position] * table[codes[b, h, position]]
    assert torch.allclose(model.bag_features(codes, weights), expected, atol=1e-6)


def test_recent_items_are_the_users_previous_items_latest_first():
    users = np.array([1, 2, 1, 1, 2])
    items = np.array([10, 20, 11, 12, 21])
    assert recent_items(users, items, 2).tolist() == [[0, 0], [0, 0], [10, 0], [11, 10], [20, 0]]


def test_feature_sets():
    sid = PPNetRanker(RankerConfig(n_users=3, n_items=5, codebook_sizes=SIZES))
    assert sid.item_embedding is None and sid.sid_embedding.num_embeddings == sum(SIZES) + 3
    item_only = PPNetRanker(RankerConfig(n_users=3, n_items=5, codebook_sizes=SIZES, features="item_id"))
    assert item_only.item_embedding is not None and item_only.sid_embedding is None
    hybrid = PPNetRanker(RankerConfig(n_users=3, n_items=5, codebook_sizes=SIZES, features="hybrid"))
    assert hybrid.item_embedding is not None and hybrid.sid_embedding.num_embeddings == sum(SIZES) + 3
    user, item, *_ = inputs(4)
    no_sids = (torch.zeros(4, 0, dtype=torch.long), torch.zeros(4, 0))
    history = (torch.tensor([[1, 2], [0, 0], [3, 0], [4, 4]]), torch.zeros(4, 2, 0, dtype=torch.long),
               torch.zeros(4, 2, 0))
    assert item_only(user % 3, item % 5, *no_sids, *history).shape == (4,)
    with pytest.raises(ValueError, match="features must be one of"):
        RankerConfig(n_users=3, n_items=5, codebook_sizes=SIZES, features="sids")
    with pytest.raises(ValueError, match="needs SID positions"):
        RankerConfig(n_users=3, n_items=5)


def test_negatives_avoid_every_interaction_and_follow_the_sampler():
    n_items = 50
    users = np.repeat(np.arange(1, 21), 10)
    items = np.random.default_rng(0).integers(1, n_items + 1, len(users))
    avoid = interaction_keys(users, items, n_items)
    popularity = np.zeros(n_items + 1)
    popularity[1:11] = np.arange(10, 0, -1)  # only items 1..10 drawable
    for sampler in ("uniform", "popularity"):
        negatives = sample_negatives(users, n_items, sampler, popularity, avoid, np.random.default_rng(1))
        found = negatives > 0
        assert found.mean() > 0.95
        keys = users[found] * (n_items + 1) + negatives[found]
        assert not np.isin(keys, avoid).any()
        if sampler == "popularity":
            assert negatives[found].max() <= 10
        else:
            assert negatives.max() > 10
    rows, missing = labelled_rows(users, items, n_items, 3, "uniform", None, avoid, seed=5)
    again, _ = labelled_rows(users, items, n_items, 3, "uniform", None, avoid, seed=5)
    assert np.array_equal(rows.item, again.item)  # seeded
    assert rows.label.sum() == len(users) and len(rows) == 4 * len(users) - missing
    # A user who has interacted with every item gets no negative, not an endless loop.
    full = interaction_keys(np.ones(5, np.int64), np.arange(1, 6), 5)
    assert sample_negatives(np.ones(3, np.int64), 5, "uniform", None, full, np.random.default_rng(0)).tolist() == [0] * 3


def planted_catalogue(seed=0, n_users=300, n_items=200, clusters=10):
    """Users like one item cluster; item popularity is Zipf within the catalogue; the SID's first token is the
    cluster, the others are noise. Returns train/valid/test rows and item features."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, clusters, n_items)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    liked = rng.integers(0, clusters, n_users)
    users, items = [], []
    for user in range(n_users):
        candidates = np.flatnonzero(cluster == liked[user])
        p = popularity[candidates] / popularity[candidates].sum()
        chosen = rng.choice(candidates, size=min(8, len(candidates)), replace=False, p=p)
        users += [user + 1] * len(chosen)
        items += list(chosen + 1)
    users, items = np.array(users), np.array(items)
    avoid = interaction_keys(users, items, n_items)
    history = recent_items(users, items, 5)
    split = rng.random(len(users))
    counts = np.bincount(items[split < 0.8], minlength=n_items + 1).astype(float)
    parts = {}
    for name, rows, seed_offset in (("train", split < 0.7, 1), ("valid", (split >= 0.7) & (split < 0.8), 2),
                                    ("test", split >= 0.8, 3)):
        parts[name] = labelled_rows(users[rows], items[rows], n_items, 2, "uniform", None, avoid, seed_offset,
                                    history[rows])[0]
    codes = np.stack([cluster, rng.integers(0, 16, n_items), rng.integers(0, 16, n_items)], axis=1)
    return parts, ItemFeatures.build(codes), counts, [clusters, 16, 16]


def test_ranker_beats_popularity_on_planted_catalogue():
    parts, items, counts, sizes = planted_catalogue()
    config = RankerConfig(n_users=301, n_items=201, codebook_sizes=sizes, history_length=5)
    train, valid, test = (RankerInputs.gather(parts[name], items) for name in ("train", "valid", "test"))
    model, history = train_ranker(config, train, parts["train"].label, valid, parts["valid"].label,
                                  RankerTrainConfig(epochs=15, batch_size=256, lr=3e-3, patience=3))
    assert history and all(np.isfinite(r["loss"]) for r in history)
    model_auc = auc(parts["test"].label, predict(model, test))
    popularity_auc = auc(parts["test"].label, counts[parts["test"].item])
    assert model_auc > popularity_auc + 0.05, (model_auc, popularity_auc)
    assert not model.training and next(model.parameters()).device.type == "cpu"
