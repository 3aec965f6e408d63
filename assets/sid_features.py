"""Per-item SID features of a tokenizer's current version, as the downstream models read them (the ranker and
the generative retriever), and the catalogue's popularity buckets for head/tail metrics."""

from dataclasses import dataclass, field

import duckdb
import numpy as np

from assets.resources import SidflowHome
from assets.tokenizers import load_current
from sid_models.ranking_data import ItemFeatures, sid_item_features


@dataclass
class FeatureSet:
    items: ItemFeatures
    token_names: list[str]
    codebook_sizes: list[int]
    tokenizer_version: str | None
    behavioral_positions: list[int] = field(default_factory=list)  # SID positions quantised from behavior

    def reordered(self, order: list[int]) -> "FeatureSet":
        """The same SIDs with their positions in `order` (a permutation of range(len(token_names)))."""
        if sorted(order) != list(range(len(self.token_names))):
            raise ValueError(f"order must permute the {len(self.token_names)} SID positions, got {order}")
        return FeatureSet(ItemFeatures(self.items.codes[:, order], self.items.weights[:, order]),
                          [self.token_names[i] for i in order], [self.codebook_sizes[i] for i in order],
                          self.tokenizer_version, [order.index(i) for i in self.behavioral_positions])


def load_feature_set(con: duckdb.DuckDBPyConnection, home: SidflowHome, feature_set: str,
                     item_ids: list[str], importance_weights: bool = True, collision_level: bool = False) -> FeatureSet:
    """Per-item SID codes of the feature set's current tokenizer version (ADC-SID's behavioral positions
    weighted by sid_importance unless `importance_weights` is false); `item_id` has no SID positions.
    `collision_level` appends each item's collision token as a last level (K = largest token + 1), which makes
    every SID unique, as generation needs."""
    if feature_set == "item_id":
        return FeatureSet(ItemFeatures.build(np.zeros((len(item_ids), 0), np.int64)), [], [], None)
    version, tokenizer = load_current(home, feature_set)
    sid = "list_append(sid, collision) AS sid" if collision_level else "sid"
    if feature_set == "adc_sid":
        table, where, params = "sid_lookup", "tokenizer_version = ?", [version]
        importance = con.sql("SELECT item_id, position, weight FROM sid_importance WHERE tokenizer_version = ?",
                             params=[version]).to_arrow_table() if importance_weights else None
    else:
        table, where, params = "baseline_sid_lookup", "tokenizer_version = ? AND tokenizer = ?", [version, feature_set]
        importance = None
    lookup = con.sql(f"SELECT item_id, {sid}, collision FROM {table} WHERE {where}", params=params).to_arrow_table()
    if lookup.num_rows == 0:
        raise ValueError(f"no {feature_set} SIDs of version {version}: materialise the SID tables first")
    names, sizes = list(tokenizer.token_names), list(tokenizer.codebook_sizes)
    if collision_level:
        names.append("collision")
        sizes.append(int(np.max(lookup.column("collision").to_numpy())) + 1)
    return FeatureSet(sid_item_features(item_ids, lookup, importance), names, sizes, version,
                      tokenizer.behavioral_positions)


def popularity_buckets(con: duckdb.DuckDBPyConnection, item_ids: list[str]) -> np.ndarray:
    """[n_items + 1] `item_stats.popularity_bucket` (head, mid, tail) of each item index; '' for index 0."""
    buckets = dict(con.execute("SELECT item_id, popularity_bucket FROM item_stats").fetchall())
    return np.array([""] + [buckets.get(i, "") for i in item_ids], dtype=object)
