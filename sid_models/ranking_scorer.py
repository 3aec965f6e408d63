"""Score (user, item) pairs with the exported ONNX ranker and the SID tables, using NumPy and onnxruntime only
(no torch), as a serving process would.

    scorer = RankingScorer("ranking_model.onnx", "vocabulary.npz", sid_lookup, sid_importance)
    scorer.score(["u1", "u1"], ["i7", "i9"], recent_items=[["i3", "i1"], ["i3", "i1"]])  # click probabilities

`recent_items` holds, per pair, the user's latest items before the request (latest first; the model reads the
first `history_length` of its metadata).

`sid_lookup` and `sid_importance` are rows of the warehouse tables of those names, as a pandas DataFrame, a
pyarrow Table or a dict of columns; only rows of the model's tokenizer version are used, and sid_importance only
when the model was trained with importance weights. Users and items the model never saw score through index 0
("unknown"); an item with a SID still gets its SID features, so items given SIDs after training are ranked on
their tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sid_models.ranking_data import sid_item_features, table_column


def onnx_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU onnxruntime session (`threads` intra-op threads when given)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class RankingScorer:
    def __init__(self, model_path: Path, vocabulary_path: Path, sid_lookup=None, sid_importance=None,
                 threads: int | None = None):
        self.session = onnx_session(model_path, threads)
        self.metadata = {key: _decode(value)
                         for key, value in self.session.get_modelmeta().custom_metadata_map.items()}
        with np.load(vocabulary_path, allow_pickle=False) as vocabulary:
            users, items = vocabulary["users"].tolist(), vocabulary["items"].tolist()
        self.user_index = {user: index + 1 for index, user in enumerate(users)}
        self.item_index = {item: index + 1 for index, item in enumerate(items)}
        width = len(self.metadata.get("codebook_sizes", []))
        if self.metadata.get("features") == "item_id" or width == 0:
            self.feature_row = {}
            self.codes, self.weights = np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32)
            return
        if sid_lookup is None:
            raise ValueError(f"the model reads SID features ({self.metadata.get('features')}): pass sid_lookup")
        # Every item the model knows plus every item the SID tables have, in one feature table.
        catalogue = list(dict.fromkeys(items + table_column(sid_lookup, "item_id").tolist()))
        if self.metadata.get("importance_weights") is False:  # trained with every weight 1
            sid_importance = None
        features = sid_item_features(catalogue, sid_lookup, sid_importance, self.metadata.get("tokenizer_version"))
        if features.codes.shape[1] != width:
            raise ValueError(f"sid_lookup has {features.codes.shape[1]} positions, the model {width}")
        self.feature_row = {item: row + 1 for row, item in enumerate(catalogue)}
        self.codes, self.weights = features.codes, features.weights

    def score(self, user_ids, item_ids, recent_items=None) -> np.ndarray:
        """Click probabilities [N] for the pairs (user_ids[n], item_ids[n]), given each pair's `recent_items`
        (the user's latest item ids, latest first; None: no history)."""
        user_ids, item_ids = list(user_ids), list(item_ids)
        recent_items = [[] for _ in user_ids] if recent_items is None else [list(r) for r in recent_items]
        if not len(user_ids) == len(item_ids) == len(recent_items):
            raise ValueError(f"{len(user_ids)} users, {len(item_ids)} items, {len(recent_items)} histories")
        if not user_ids:
            return np.zeros(0, dtype=np.float32)
        length = int(self.metadata.get("history_length", 0))
        history = [(items[:length] + [None] * length)[:length] for items in recent_items]
        rows = np.array([self.feature_row.get(item, 0) for item in item_ids], dtype=np.int64)
        history_rows = np.array([[self.feature_row.get(i, 0) for i in items] for items in history],
                                dtype=np.int64).reshape(len(history), length)
        feed = {"user_index": np.array([self.user_index.get(u, 0) for u in user_ids], dtype=np.int64),
                "item_index": np.array([self.item_index.get(i, 0) for i in item_ids], dtype=np.int64),
                "sid_codes": self.codes[rows], "sid_weights": self.weights[rows],
                "history_index": np.array([[self.item_index.get(i, 0) for i in items] for items in history],
                                          dtype=np.int64).reshape(len(history), length),
                "history_codes": self.codes[history_rows], "history_weights": self.weights[history_rows]}
        return self.session.run(None, feed)[0]


def _decode(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value
