"""The synthetic source: exact shape, determinism, and the planted signals later stages rely on."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from assets.sources import synthetic
from assets.sources.synthetic import SyntheticParams

DEFAULT = SyntheticParams()


def log(p: SyntheticParams, batch_events: int = 2_000_000) -> dict[str, np.ndarray]:
    table = pa.concat_tables(synthetic.interaction_batches(p, batch_events))
    return {name: table[name].to_numpy() for name in table.column_names}


@pytest.fixture(scope="module")
def events() -> dict[str, np.ndarray]:
    return log(DEFAULT)


def same_user_pairs(ev: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(previous item, next item) of consecutive events of one user."""
    same = ev["user_index"][1:] == ev["user_index"][:-1]
    return ev["item_index"][:-1][same], ev["item_index"][1:][same]


@pytest.mark.parametrize("field, kwargs", [
    ("users", {"users": 0}),
    ("items", {"items": 0}),
    ("items", {"items": 10**8, "clusters": 20}),
    ("events", {"events": 3 * 2_000 - 1}),
    ("clusters", {"clusters": 0}),
    ("clusters", {"items": 10, "clusters": 11, "users": 10, "events": 100}),
    ("content_dim", {"content_dim": 0}),
    ("seed", {"seed": -1}),
    ("popularity_exponent", {"popularity_exponent": -0.5}),
    ("sequential_strength", {"sequential_strength": 1.5}),
    ("sequential_strength", {"sequential_strength": -0.1}),
    ("days", {"days": 0}),
    ("start_date", {"start_date": "yesterday"}),
])
def test_invalid_params_name_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        SyntheticParams(**kwargs)


def test_ids_have_fixed_width() -> None:
    assert synthetic.user_id(42) == "u00000042" and len(synthetic.user_id(0)) == 1 + synthetic.USER_ID_WIDTH
    assert synthetic.item_id(7) == "i0000007" and len(synthetic.item_id(0)) == 1 + synthetic.ITEM_ID_WIDTH
    assert (synthetic.USER_ID_PREFIX, synthetic.ITEM_ID_PREFIX) == ("u", "i")


def test_same_seed_same_data_and_other_seed_other_data(events: dict[str, np.ndarray]) -> None:
    again = log(DEFAULT)
    for name in events:
        np.testing.assert_array_equal(events[name], again[name])
    assert synthetic.item_table(DEFAULT).equals(synthetic.item_table(SyntheticParams()))
    np.testing.assert_array_equal(synthetic.content_vectors(DEFAULT), synthetic.content_vectors(SyntheticParams()))

    other = SyntheticParams(seed=1)
    assert not np.array_equal(log(other)["item_index"], events["item_index"])
    assert not np.array_equal(synthetic.item_clusters(other), synthetic.item_clusters(DEFAULT))
    assert synthetic.item_table(other)["title"] != synthetic.item_table(DEFAULT)["title"]
    assert not np.allclose(synthetic.content_vectors(other), synthetic.content_vectors(DEFAULT))


def test_exact_event_count_and_long_tailed_user_activity(events: dict[str, np.ndarray]) -> None:
    counts = synthetic.user_event_counts(DEFAULT)
    assert counts.dtype == np.int64 and counts.shape == (DEFAULT.users,)
    assert counts.sum() == DEFAULT.events == events["user_index"].size
    assert counts.min() >= 3
    np.testing.assert_array_equal(np.bincount(events["user_index"], minlength=DEFAULT.users), counts)
    assert counts.max() > 10 * np.median(counts)  # a few heavy users


def test_columns_types_and_grouping(events: dict[str, np.ndarray]) -> None:
    table = next(synthetic.interaction_batches(DEFAULT))
    assert table.schema.names == ["user_index", "item_index", "timestamp", "rating"]
    assert [f.type for f in table.schema] == [pa.int64(), pa.int64(), pa.int64(), pa.int8()]
    assert np.all(np.diff(events["user_index"]) >= 0)  # grouped by user, in user order
    assert events["item_index"].min() >= 0 and events["item_index"].max() < DEFAULT.items
    assert set(np.unique(events["rating"])) <= {1, 2, 3, 4, 5}
    assert len(np.unique(events["rating"])) == 5


def test_output_does_not_depend_on_batch_size() -> None:
    p = SyntheticParams(users=25_000, items=2_000, events=120_000, seed=3)  # three user blocks
    small = list(synthetic.interaction_batches(p, batch_events=7_000))
    big = list(synthetic.interaction_batches(p, batch_events=10**9))
    assert len(big) == 1 and len(small) > 1
    assert all(t.num_rows >= 7_000 for t in small[:-1])
    assert pa.concat_tables(small).equals(pa.concat_tables(big))
    assert big[0].num_rows == p.events


def test_timestamps_increase_per_user_and_stay_in_range(events: dict[str, np.ndarray]) -> None:
    start = 1_577_836_800  # 2020-01-01T00:00:00Z
    ts, user = events["timestamp"], events["user_index"]
    assert ts.min() >= start and ts.max() < start + DEFAULT.days * 86_400
    same = user[1:] == user[:-1]
    assert np.all(ts[1:][same] >= ts[:-1][same])
    assert ts.max() - ts.min() > 0.9 * DEFAULT.days * 86_400  # spread over the whole span
    late = SyntheticParams(start_date="2023-06-01", days=10)
    ts = log(late)["timestamp"]
    assert ts.min() >= 1_685_577_600 and ts.max() < 1_685_577_600 + 10 * 86_400


def test_user_item_timestamp_unique_and_repeats_rare(events: dict[str, np.ndarray]) -> None:
    user, item, ts = events["user_index"], events["item_index"], events["timestamp"]
    triples = np.unique(np.stack([user, item, ts]), axis=1)
    assert triples.shape[1] == user.size
    pairs = np.unique(user * DEFAULT.items + item).size
    assert 1 - pairs / user.size < 0.05


def test_dense_log_still_has_unique_increasing_timestamps() -> None:
    # ~5,000 events per user in one day over 20 items: ties and repeated items are unavoidable here
    p = SyntheticParams(users=10, items=20, clusters=2, events=50_000, days=1)
    ev = log(p)
    user, item, ts = ev["user_index"], ev["item_index"], ev["timestamp"]
    same = user[1:] == user[:-1]
    assert np.all(ts[1:][same] > ts[:-1][same])
    assert ts.min() >= p.start_seconds and ts.max() < p.start_seconds + 86_400
    assert np.unique(np.stack([user, item, ts]), axis=1).shape[1] == user.size


def test_user_blocks_use_their_own_random_streams() -> None:
    # One cluster and 3 events per user: blocks sharing a stream would repeat each other exactly.
    p = SyntheticParams(users=2 * synthetic.USER_BLOCK, events=6 * synthetic.USER_BLOCK, clusters=1)
    ev = log(p)
    for name in ("item_index", "timestamp"):
        first, second = np.split(ev[name], 2)
        assert np.mean(first == second) < 0.2


def test_item_popularity_has_a_long_tail(events: dict[str, np.ndarray]) -> None:
    counts = np.sort(np.bincount(events["item_index"], minlength=DEFAULT.items))[::-1]
    top_share = counts[: DEFAULT.items // 10].sum() / counts.sum()
    assert top_share > 0.4
    assert (counts <= np.median(counts) / 4).sum() > 0.02 * DEFAULT.items  # plenty of rare items


def test_item_clusters_cover_every_cluster() -> None:
    clusters = synthetic.item_clusters(DEFAULT)
    assert clusters.dtype == np.int32 and clusters.shape == (DEFAULT.items,)
    sizes = np.bincount(clusters, minlength=DEFAULT.clusters)
    assert sizes.size == DEFAULT.clusters and sizes.min() >= 1
    assert sizes.max() > 1.5 * sizes.min()  # sizes vary


def test_consecutive_items_share_a_cluster_far_above_chance(events: dict[str, np.ndarray]) -> None:
    clusters = synthetic.item_clusters(DEFAULT)
    prev, nxt = same_user_pairs(events)
    rate = np.mean(clusters[prev] == clusters[nxt])
    share = np.bincount(clusters[events["item_index"]], minlength=DEFAULT.clusters) / events["item_index"].size
    assert rate > 5 / DEFAULT.clusters
    assert rate > 2.5 * np.sum(share**2)  # beyond what unequal cluster sizes alone give


def test_users_mostly_stay_in_their_preferred_clusters(events: dict[str, np.ndarray]) -> None:
    prefs = synthetic.user_preferences(DEFAULT)
    cluster = synthetic.item_clusters(DEFAULT)[events["item_index"]]
    liked = (cluster == prefs[events["user_index"], 0]) | (cluster == prefs[events["user_index"], 1])
    assert liked.mean() > 0.6
    rating = events["rating"].astype(float)
    assert rating[liked].mean() > rating[~liked].mean() + 0.6


@pytest.mark.parametrize("strength, low, high", [(0.9, 0.45, 1.0), (0.0, 0.0, 0.04)])
def test_successor_following_rate(strength: float, low: float, high: float) -> None:
    p = SyntheticParams(items=5_000, clusters=25, users=2_000, events=60_000, sequential_strength=strength)
    successor = synthetic.successor_map(p)
    clusters = synthetic.item_clusters(p)
    assert np.array_equal(np.sort(successor), np.arange(p.items))  # a permutation ...
    assert np.array_equal(clusters[successor], clusters)           # ... inside each cluster
    prev, nxt = same_user_pairs(log(p))
    assert low <= np.mean(successor[prev] == nxt) <= high


def test_content_vectors_reveal_clusters() -> None:
    vectors = synthetic.content_vectors(DEFAULT)
    assert vectors.dtype == np.float32 and vectors.shape == (DEFAULT.items, DEFAULT.content_dim)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    clusters = synthetic.item_clusters(DEFAULT)
    same = clusters[:, None] == clusters[None, :]
    np.fill_diagonal(same, False)
    different = clusters[:, None] != clusters[None, :]
    assert cosine[same].mean() > cosine[different].mean() + 0.3
    assert synthetic.content_vectors(SyntheticParams(content_dim=8)).shape == (DEFAULT.items, 8)


def test_item_table_columns_and_text() -> None:
    table = synthetic.item_table(DEFAULT)
    assert table.schema.names == ["item_index", "item_id", "title", "categories", "brand", "description",
                                  "cluster"]
    assert table.schema.field("item_index").type == pa.int64()
    assert table.schema.field("cluster").type == pa.int32()
    assert all(table.schema.field(c).type == pa.string() for c in ("item_id", "title", "categories", "brand",
                                                                     "description"))
    rows = table.to_pydict()
    assert rows["item_index"] == list(range(DEFAULT.items))
    assert rows["item_id"] == [synthetic.item_id(i) for i in range(DEFAULT.items)]
    assert all(re.fullmatch(r"i\d{7}", i) for i in rows["item_id"])
    np.testing.assert_array_equal(np.array(rows["cluster"]), synthetic.item_clusters(DEFAULT))
    assert all(text for col in ("title", "brand", "description") for text in rows[col])

    by_cluster: dict[int, list[int]] = {}
    for index, cluster in enumerate(rows["cluster"]):
        by_cluster.setdefault(cluster, []).append(index)
    for members in by_cluster.values():
        categories = {rows["categories"][i] for i in members}
        assert len(categories) == 1  # the category path names the cluster
        assert next(iter(categories)).startswith("Beauty > ") and next(iter(categories)).count(" > ") == 2
        assert len({rows["brand"][i] for i in members}) <= 4
    assert len(set(rows["categories"])) == DEFAULT.clusters

    def cluster_words(i: int) -> set[str]:  # the two words after the brand come from the cluster's vocabulary
        return set(rows["title"][i][len(rows["brand"][i]):].lower().split()[:2])

    pairs = np.random.default_rng(0).integers(0, DEFAULT.items, (3_000, 2))
    shared = np.array([bool(cluster_words(a) & cluster_words(b)) for a, b in pairs])
    same = np.array([rows["cluster"][a] == rows["cluster"][b] for a, b in pairs])
    assert shared[same].mean() > 0.2 and shared[~same].mean() < 0.05


def test_scales_without_per_event_python_work() -> None:
    p = SyntheticParams(users=60_000, items=20_000, events=1_200_000, clusters=50)
    total = sum(t.num_rows for t in synthetic.interaction_batches(p, batch_events=300_000))
    assert total == p.events
    assert synthetic.item_table(p).num_rows == p.items
