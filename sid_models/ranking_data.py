"""Labelled (user, item) rows for the ranker when the log has no ratings: observed interactions are positives and
sampled items the user never interacted with (in any split) are negatives.

Two samplers, both seeded: `uniform` draws catalogue items with equal probability (easy negatives: most are
unpopular, so popularity alone already ranks well), `popularity` draws items in proportion to their train-split
interaction count (hard negatives: a popularity ranker sits near chance, and items never seen in training are
never drawn). Indices: users 1..n_users and items 1..n_items, 0 reserved for "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLERS = ("uniform", "popularity")
# The ranker's (and its ONNX graph's) inputs: the row's user and item, the item's SID codes and weights, and the
# same for the user's recent items (history_index 0 = no item).
RANKER_INPUTS = ("user_index", "item_index", "sid_codes", "sid_weights", "history_index", "history_codes",
                 "history_weights")


@dataclass
class RankingRows:
    user: np.ndarray  # int64 [N]
    item: np.ndarray  # int64 [N], 1..n_items
    label: np.ndarray  # float32 [N], 1 positive, 0 negative
    history: np.ndarray | None = None  # int64 [N, H]: the user's items before the row, latest first, 0 = none

    def __post_init__(self):
        if self.history is None:
            self.history = np.zeros((len(self.label), 0), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.label)


def recent_items(user: np.ndarray, item: np.ndarray, length: int) -> np.ndarray:
    """[N, length]: for each event (rows in time order), the same user's previous `length` items, latest first,
    0 where the user has fewer earlier events."""
    user, item = np.asarray(user), np.asarray(item, np.int64)
    order = np.lexsort((np.arange(len(user)), user))  # by user, then time
    sorted_user, sorted_item = user[order], item[order]
    history = np.zeros((len(user), length), dtype=np.int64)
    for back in range(1, length + 1):
        previous = np.arange(len(user)) - back
        same_user = (previous >= 0) & (sorted_user[np.maximum(previous, 0)] == sorted_user)
        history[order, back - 1] = np.where(same_user, sorted_item[np.maximum(previous, 0)], 0)
    return history


@dataclass
class ItemFeatures:
    """Per item index (row 0: unknown item, every code -1): SID codes and per-position weights."""

    codes: np.ndarray  # int64 [n_items + 1, L], -1 where a code is unknown
    weights: np.ndarray  # float32 [n_items + 1, L]

    @classmethod
    def build(cls, codes: np.ndarray, weights: np.ndarray | None = None) -> ItemFeatures:
        """From the catalogue's codes [n_items, L] (item index i + 1 is row i) and optional weights (1 if None)."""
        codes = np.asarray(codes, dtype=np.int64)
        weights = np.ones(codes.shape, dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
        if weights.shape != codes.shape:
            raise ValueError(f"weights {weights.shape} and codes {codes.shape} differ in shape")
        if (codes < -1).any():
            raise ValueError("SID codes must be >= 0, or -1 for an unknown code")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("SID weights must be finite and >= 0")
        unknown = np.full((1, codes.shape[1]), -1, dtype=np.int64)
        return cls(np.vstack([unknown, codes]), np.vstack([np.zeros((1, codes.shape[1]), np.float32), weights]))


def interaction_keys(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted unique int64 keys user * (n_items + 1) + item: the pairs a negative must avoid."""
    return np.unique(np.asarray(user, np.int64) * (n_items + 1) + np.asarray(item, np.int64))


def sample_negatives(user: np.ndarray, n_items: int, sampler: str, popularity: np.ndarray | None,
                     avoid: np.ndarray, rng: np.random.Generator, max_rounds: int = 50) -> np.ndarray:
    """One negative item per entry of `user` (0 where none was found in `max_rounds` redraws, e.g. a user who
    interacted with every drawable item). `popularity` [n_items + 1] weights the `popularity` sampler."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    user = np.asarray(user, np.int64)
    if sampler == "popularity":
        weights = np.asarray(popularity, np.float64)
        if weights.shape != (n_items + 1,) or weights[1:].sum() <= 0:
            raise ValueError(f"popularity must have n_items + 1 = {n_items + 1} entries with a positive sum")
        cumulative = np.cumsum(weights[1:] / weights[1:].sum())

    def draw(count: int) -> np.ndarray:
        if sampler == "uniform":
            return rng.integers(1, n_items + 1, count)
        return np.minimum(np.searchsorted(cumulative, rng.random(count), side="right"), n_items - 1) + 1

    items = np.zeros(len(user), dtype=np.int64)
    pending = np.arange(len(user))
    for _ in range(max_rounds):
        if len(pending) == 0:
            break
        candidates = draw(len(pending))
        keys = user[pending] * (n_items + 1) + candidates
        hit = np.searchsorted(avoid, keys)
        seen = (hit < len(avoid)) & (avoid[np.minimum(hit, len(avoid) - 1)] == keys)
        items[pending[~seen]] = candidates[~seen]
        pending = pending[seen]
    return items


def labelled_rows(user: np.ndarray, item: np.ndarray, n_items: int, per_positive: int, sampler: str,
                  popularity: np.ndarray | None, avoid: np.ndarray, seed: int,
                  history: np.ndarray | None = None) -> tuple[RankingRows, int]:
    """Positives (user, item) plus `per_positive` sampled negatives each; returns (rows, negatives not found).
    Rows are positives first, then negatives in draw order; a negative shares its positive's `history`."""
    if per_positive < 1:
        raise ValueError(f"per_positive must be >= 1, got {per_positive}")
    rng = np.random.default_rng(seed)
    negative_users = np.repeat(np.asarray(user, np.int64), per_positive)
    negatives = sample_negatives(negative_users, n_items, sampler, popularity, avoid, rng)
    found = negatives > 0
    history = np.zeros((len(user), 0), np.int64) if history is None else np.asarray(history, np.int64)
    rows = RankingRows(
        user=np.concatenate([np.asarray(user, np.int64), negative_users[found]]),
        item=np.concatenate([np.asarray(item, np.int64), negatives[found]]),
        label=np.concatenate([np.ones(len(user), np.float32), np.zeros(int(found.sum()), np.float32)]),
        history=np.concatenate([history, np.repeat(history, per_positive, axis=0)[found]]))
    return rows, int((~found).sum())


def table_column(table, name: str, optional: bool = False) -> np.ndarray | None:
    """A column of a pandas DataFrame, a pyarrow Table or a dict of sequences, as a NumPy array (None when it is
    missing and `optional`)."""
    try:
        values = table[name]
    except (KeyError, TypeError) as error:
        if optional:
            return None
        raise ValueError(f"the table has no column {name!r}") from error
    return np.asarray(values.to_numpy(zero_copy_only=False) if hasattr(values, "combine_chunks") else values)


def sid_item_features(item_ids, sid_lookup, sid_importance=None, tokenizer_version: str | None = None
                      ) -> ItemFeatures:
    """ItemFeatures for `item_ids` (item index i + 1 is item_ids[i]) from rows of a `sid_lookup` table
    (item_id, sid, optionally tokenizer_version) and optionally of `sid_importance` (item_id, position, weight):
    codes from the lookup, weight R(e_b) at each behavioral position, 1 at the others. Items without a SID get
    code -1 (masked); only rows of `tokenizer_version` count when it is given."""
    index = {item: row for row, item in enumerate(np.asarray(item_ids).tolist())}

    def rows_of(table) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue row of each counted table row, -1 for items outside item_ids; which table rows count)."""
        items = table_column(table, "item_id")
        versions = table_column(table, "tokenizer_version", optional=True) if tokenizer_version else None
        keep = np.ones(len(items), dtype=bool) if versions is None else versions == tokenizer_version
        return np.array([index.get(item, -1) for item in items[keep].tolist()], dtype=np.int64), keep

    at, keep = rows_of(sid_lookup)
    sids = table_column(sid_lookup, "sid")[keep]
    width = len(sids[0]) if len(sids) else 0
    codes = np.full((len(index), width), -1, dtype=np.int64)
    if len(sids):
        codes[at[at >= 0]] = np.stack([np.asarray(s, dtype=np.int64) for s in sids])[at >= 0]
    weights = np.ones(codes.shape, dtype=np.float32)
    if sid_importance is not None:
        rows, keep = rows_of(sid_importance)
        positions = table_column(sid_importance, "position")[keep].astype(np.int64)
        known = rows >= 0
        weights[rows[known], positions[known]] = table_column(sid_importance, "weight")[keep][known]
    return ItemFeatures.build(codes, weights)

