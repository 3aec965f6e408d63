"""ONNX export of the ranker: checker, no Loop node, parity with PyTorch at several batch sizes, and the
torch-free scorer reading the SID tables."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sid_models.ranking import PPNetRanker, RankerConfig
from sid_models.ranking_data import ItemFeatures, RankingRows, sid_item_features
from sid_models.ranking_export import export_ranker, op_types, parity
from sid_models.train_ranking import RankerInputs, predict

ROOT = Path(__file__).resolve().parents[2]
SIZES = [16, 16, 8]


HISTORY = 3


def rows(n, seed=0, n_users=40, n_items=30):
    rng = np.random.default_rng(seed)
    return RankingRows(rng.integers(0, n_users + 1, n), rng.integers(0, n_items + 1, n), np.zeros(n, np.float32),
                       rng.integers(0, n_items + 1, (n, HISTORY)))


def catalogue(n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, size, n_items) for size in SIZES], axis=1)
    weights = np.ones(codes.shape, np.float32)
    weights[:, 1:] = rng.random((n_items, 2))
    return codes, weights


@pytest.fixture(scope="module", params=["sid", "hybrid", "item_id"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    sizes = [] if request.param == "item_id" else SIZES
    model = PPNetRanker(RankerConfig(n_users=41, n_items=31, codebook_sizes=sizes, features=request.param,
                                     history_length=HISTORY)).eval()
    codes, weights = catalogue()
    items = ItemFeatures.build(codes[:, :len(sizes)], weights[:, :len(sizes)])
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    export_ranker(model, path, RankerInputs.gather(rows(64), items),
                  {"features": request.param, "tokenizer_version": "adc_sid-test", "codebook_sizes": sizes,
                   "history_length": HISTORY})
    return model, items, path


def test_export_has_no_loop_and_matches_pytorch(exported):
    model, items, path = exported
    assert path.is_file() and not path.with_suffix(".onnx.data").exists()  # one file
    assert "Loop" not in op_types(path) and "Gather" in op_types(path)
    for n in (1, 7, 1000):  # the batch axis is dynamic
        assert parity(path, model, RankerInputs.gather(rows(n, seed=n), items)) <= 1e-5


def test_scorer_reads_sid_tables_and_never_imports_torch(exported, tmp_path):
    model, items, path = exported
    users = np.array([f"u{i}" for i in range(40)])
    item_ids = np.array([f"i{i}" for i in range(30)])
    np.savez(tmp_path / "vocabulary.npz", users=users, items=item_ids)
    codes, weights = catalogue()
    np.savez(tmp_path / "tables.npz", item_id=item_ids, sid=codes, weight=weights[:, 1:].reshape(-1))
    script = f"""
import sys, numpy as np
from sid_models.ranking_scorer import RankingScorer
tables = np.load({str(tmp_path / 'tables.npz')!r})
n = len(tables["item_id"])
lookup = {{"item_id": tables["item_id"], "sid": list(tables["sid"]), "tokenizer_version": ["adc_sid-test"] * n}}
importance = {{"item_id": np.repeat(tables["item_id"], 2), "position": np.tile([1, 2], n),
               "weight": tables["weight"], "tokenizer_version": ["adc_sid-test"] * (2 * n)}}
scorer = RankingScorer({str(path)!r}, {str(tmp_path / 'vocabulary.npz')!r}, lookup, importance)
scores = scorer.score(["u3", "u5", "nobody"], ["i4", "i0", "i29"],
                      recent_items=[["i7", "i2", "i9", "i1"], [], ["i3", "new item"]])
assert "torch" not in sys.modules, "the scorer imported torch"
np.save({str(tmp_path / 'scores.npy')!r}, scores)
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    scores = np.load(tmp_path / "scores.npy")
    # user index = position + 1, item index = position + 1; the unknown user and item score through index 0,
    # and histories are cut or padded to the model's length.
    history = np.array([[8, 3, 10], [0, 0, 0], [4, 0, 0]])
    expected = predict(model, RankerInputs.gather(RankingRows(np.array([4, 6, 0]), np.array([5, 1, 30]),
                                                              np.zeros(3, np.float32), history), items))
    assert np.abs(scores - expected).max() <= 1e-5


def test_sid_item_features_from_table_rows():
    lookup = {"item_id": ["a", "b", "z"], "sid": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
              "tokenizer_version": ["v1", "v1", "v0"]}
    importance = {"item_id": ["a", "a", "b"], "position": [1, 2, 2], "weight": [0.5, 0.0, 2.0],
                  "tokenizer_version": ["v1", "v1", "v1"]}
    features = sid_item_features(["a", "b", "c"], lookup, importance, tokenizer_version="v1")
    assert features.codes.tolist() == [[-1, -1, -1], [1, 2, 3], [4, 5, 6], [-1, -1, -1]]  # row 0: unknown
    assert features.weights.tolist() == [[0, 0, 0], [1, 0.5, 0], [1, 1, 2.0], [1, 1, 1]]
    with pytest.raises(ValueError, match="no column 'sid'"):
        sid_item_features(["a"], {"item_id": ["a"]})
    with pytest.raises(ValueError, match="SID codes must be >= 0, or -1"):
        sid_item_features(["a"], {"item_id": ["a"], "sid": [[1, -2, 3]]})
