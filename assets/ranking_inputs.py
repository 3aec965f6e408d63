"""What the ranking assets and benchmark read from the warehouse: labelled rows of the chronological split and
each feature set's per-item SID features.

Users are numbered 1..n over every user of `splits` (rows keep that id, so GAUC groups real users); the model's
user vocabulary is the users with train rows (`model_user` maps one to the other, 0 = unseen). Items are numbered
1..n_items in catalogue (item_id) order.
"""

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np

from assets.feature_store import catalogue_item_ids
from assets.resources import RankingSettings
from assets.sid_features import FeatureSet, popularity_buckets
from sid_models.ranking import PPNetRanker, RankerConfig
from sid_models.ranking_data import RankingRows, interaction_keys, labelled_rows, recent_items
from sid_models.train_ranking import RankerInputs, RankerTrainConfig, evaluate, predict, train_ranker

EVENTS_SQL = """
    WITH catalogue AS (SELECT item_id, row_number() OVER (ORDER BY item_id) AS item_index FROM items)
    SELECT s.user_id, c.item_index, s.chrono_split = 'train' AS train
    FROM splits s JOIN catalogue c USING (item_id)
    ORDER BY s.ts, s.user_id, s.seq_pos"""


@dataclass
class RankingData:
    user_ids: np.ndarray  # every user of the split; user code u is user_ids[u - 1]
    item_ids: list[str]  # the catalogue; item index i is item_ids[i - 1]
    model_user: np.ndarray  # [n_users + 1] user code -> the model's user index (0: no train rows)
    model_user_ids: np.ndarray  # the model's user vocabulary: the user id of model index k + 1 at position k
    item_buckets: np.ndarray  # [n_items + 1] popularity bucket of each item index ('' for 0)
    popularity: np.ndarray  # [n_items + 1] train-split interaction counts
    train: RankingRows
    valid: RankingRows
    test: RankingRows
    negatives_not_found: int


def load_ranking_data(con: duckdb.DuckDBPyConnection, settings: RankingSettings) -> RankingData:
    item_ids = catalogue_item_ids(con)
    n_items = len(item_ids)
    events = con.execute(EVENTS_SQL).fetchnumpy()
    if len(events["user_id"]) == 0:
        raise ValueError("splits is empty: the ranker has no interactions to learn from")
    user_ids, user_code = np.unique(np.asarray(events["user_id"]).astype(str), return_inverse=True)
    user_code = user_code.astype(np.int64) + 1
    item = np.asarray(events["item_index"], dtype=np.int64)
    is_train = np.asarray(events["train"], dtype=bool)
    if not is_train.any() or is_train.all():
        raise ValueError("the chronological split needs both train and test rows")
    avoid = interaction_keys(user_code, item, n_items)
    # Each event's history: the user's latest items before it (any split: what a server knows at request time).
    history = recent_items(user_code, item, settings.model.history_length)
    popularity = np.bincount(item[is_train], minlength=n_items + 1).astype(np.float64)
    train_rows = np.flatnonzero(is_train)  # in time order
    n_valid = max(int(round(len(train_rows) * settings.valid_fraction)), 1)
    fit_rows, valid_rows, test_rows = train_rows[:-n_valid], train_rows[-n_valid:], np.flatnonzero(~is_train)
    parts, missing = {}, 0
    for offset, (name, rows) in enumerate((("train", fit_rows), ("valid", valid_rows), ("test", test_rows))):
        parts[name], not_found = labelled_rows(user_code[rows], item[rows], n_items, settings.negatives_per_positive,
                                               settings.negatives, popularity, avoid, settings.seed * 3 + offset,
                                               history[rows])
        missing += not_found
    model_user = np.zeros(len(user_ids) + 1, dtype=np.int64)
    seen = np.unique(user_code[fit_rows])
    model_user[seen] = np.arange(1, len(seen) + 1)
    item_buckets = popularity_buckets(con, item_ids)
    return RankingData(user_ids=user_ids, item_ids=item_ids, model_user=model_user,
                       model_user_ids=user_ids[seen - 1], item_buckets=item_buckets,
                       popularity=popularity, train=parts["train"], valid=parts["valid"], test=parts["test"],
                       negatives_not_found=missing)


@dataclass
class RankingFit:
    model: PPNetRanker
    config: RankerConfig
    history: list[dict]
    metrics: dict[str, float]  # the ranker on the test rows
    popularity_metrics: dict[str, float]  # train-split popularity as the score, same rows
    test_inputs: RankerInputs


def fit_ranking(data: RankingData, features: FeatureSet, settings: RankingSettings, device: str,
                progress: Callable[[dict], None] | None = None) -> RankingFit:
    """Train on data.train (epoch chosen on data.valid), then score data.test once."""
    config = RankerConfig(n_users=len(data.model_user_ids) + 1, n_items=len(data.item_ids) + 1,
                          codebook_sizes=features.codebook_sizes,
                          features=settings.ranker_features,
                          **settings.model.model_dump())
    train, valid, test = (RankerInputs.gather(rows, features.items, data.model_user)
                          for rows in (data.train, data.valid, data.test))
    model, history = train_ranker(config, train, data.train.label, valid, data.valid.label,
                                  RankerTrainConfig(device=device, **settings.train.model_dump()), progress)
    return RankingFit(model=model, config=config, history=history,
                      metrics=evaluate(predict(model, test), data.test, data.item_buckets),
                      popularity_metrics=evaluate(data.popularity[data.test.item], data.test, data.item_buckets),
                      test_inputs=test)
