"""The ranking and export groups on the synthetic catalogue: the ranker trains on the SID tables and reports
AUC/GAUC overall and per bucket, the ONNX export passes its parity check, the torch-free scorer reproduces the
ranker's scores from the export and the warehouse's SID tables, and bad settings fail naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import assets.export as export_module
from assets.export import export_dir, load_ranker
from assets.ranking import current_ranker
from orchestration.settings import ConfigError, load_settings
from sid_models.ranking_data import RANKER_INPUTS
from sid_models.train_ranking import RankerInputs, predict
from tests.assets.test_sid_tables import FAST_SASREC, FAST_TOKENIZERS, SID_GROUPS
from tests.helpers import SMALL_SYNTHETIC, check_results, materialised, run, write_config

ROOT = Path(__file__).resolve().parents[2]
FAST_RANKING = {"negatives_per_positive": 2, "negatives": "uniform", "model": {"embedding_dim": 8, "hidden": [32, 16], "gate_hidden": 16},
                "train": {"epochs": 3, "batch_size": 512, "torch_threads": 2}}
RANKING_GROUPS = "group:downstream or group:export"


@pytest.fixture(scope="module")
def ranked(tmp_path_factory):
    """One home with the SID tables, shared by the tests of this module (each materialises the ranking groups)."""
    root = tmp_path_factory.mktemp("ranking")
    settings = load_settings(config=write_config(root, synthetic=SMALL_SYNTHETIC, sasrec=FAST_SASREC,
                                                 tokenizers=FAST_TOKENIZERS, ranking=FAST_RANKING),
                             home=root / "home")
    assert run(settings, SID_GROUPS).success
    return settings


def assert_scorer_matches_ranker(home, directory: Path) -> None:
    """The torch-free scorer, in a process of its own, reads the export (`artifacts/export/<ranker_version>/`) and
    the warehouse's SID tables and reproduces the ranker's scores on held-out rows."""
    exported = export_dir(home) / directory.name
    with np.load(directory / "holdout.npz") as holdout:
        inputs = RankerInputs(*(torch.as_tensor(holdout[name][:200]) for name in RANKER_INPUTS))
    expected = predict(load_ranker(directory / "ranker.pt"), inputs)
    with np.load(directory / "vocabulary.npz") as vocabulary:
        users = ["?" if i == 0 else vocabulary["users"][i - 1] for i in inputs.user_index.tolist()]
        items = [vocabulary["items"][i - 1] for i in inputs.item_index.tolist()]
        recent = [[vocabulary["items"][i - 1] for i in row if i > 0] for row in inputs.history_index.tolist()]
    assert any(recent)
    request = directory.parent / "request.json"
    request.write_text(json.dumps({"users": users, "items": items, "recent": recent}))
    script = f"""
import json, sys, duckdb, numpy as np
from sid_models.ranking_scorer import RankingScorer
with duckdb.connect({str(home.warehouse_path)!r}, read_only=True) as con:
    lookup = con.sql("SELECT item_id, sid, tokenizer_version FROM sid_lookup").to_arrow_table()
    importance = con.sql("SELECT item_id, position, weight, tokenizer_version FROM sid_importance").to_arrow_table()
scorer = RankingScorer({str(exported / 'ranking_model.onnx')!r}, {str(exported / 'vocabulary.npz')!r},
                       lookup, importance)
request = json.loads(open({str(request)!r}).read())
np.save({str(directory.parent / 'scores.npy')!r}, scorer.score(request["users"], request["items"], request["recent"]))
assert "torch" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    assert np.abs(np.load(directory.parent / "scores.npy") - expected).max() <= 1e-5


def test_ranker_trains_exports_and_serves(ranked):
    result = run(ranked, RANKING_GROUPS)
    assert result.success and {"ranking_model", "ranking_model_onnx"} <= materialised(result)
    check = check_results(result)["ranking_model_onnx.ranking_model_onnx_parity"]
    assert check.passed and check.metadata["max_abs_diff"].value <= 1e-4
    version, directory = current_ranker(ranked.home)
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["feature_set"] == "adc_sid" and metrics["token_names"][-3:] == ["b0", "b1", "b2"]
    for key in ("auc", "gauc", "auc_head", "auc_tail", "gauc_head", "gauc_tail"):
        assert 0.0 <= metrics["test"][key] <= 1.0, key
    assert metrics["test"]["auc"] > 0.6  # far from chance after 3 epochs (uniform negatives: 0.74)
    assert (directory / "auc_by_bucket.png").stat().st_size > 0
    with np.load(directory / "holdout.npz") as holdout:
        assert (holdout["sid_weights"] != 1.0).any()  # the behavioral tokens carry their importance
    assert_scorer_matches_ranker(ranked.home, directory)


@pytest.mark.parametrize("choice", [{"feature_set": "item_id"}, {"feature_set": "rqvae", "hybrid": True}])
def test_other_feature_sets_train_and_export(ranked, tmp_path, choice):
    settings = load_settings(config=write_config(tmp_path, synthetic=SMALL_SYNTHETIC, sasrec=FAST_SASREC,
                                                 tokenizers=FAST_TOKENIZERS, ranking={**FAST_RANKING, **choice}),
                             home=ranked.home.home_path)  # the shared home, whose SID tables exist
    result = run(settings, RANKING_GROUPS)
    assert result.success and check_results(result)["ranking_model_onnx.ranking_model_onnx_parity"].passed
    metrics = json.loads((current_ranker(settings.home)[1] / "metrics.json").read_text())
    assert metrics["feature_set"] == choice["feature_set"]
    assert metrics["features"] == ("item_id" if choice["feature_set"] == "item_id" else "hybrid")
    assert metrics["token_names"] == ([] if choice["feature_set"] == "item_id" else ["c0", "c1", "c2"])


def test_unweighted_ranker_reads_every_token_at_weight_one(ranked, tmp_path):
    settings = load_settings(config=write_config(tmp_path, synthetic=SMALL_SYNTHETIC, sasrec=FAST_SASREC,
                                                 tokenizers=FAST_TOKENIZERS,
                                                 ranking={**FAST_RANKING, "importance_weights": False}),
                             home=ranked.home.home_path)
    assert run(settings, RANKING_GROUPS).success
    _, directory = current_ranker(settings.home)
    assert json.loads((directory / "metrics.json").read_text())["importance_weights"] is False
    with np.load(directory / "holdout.npz") as holdout:
        known = holdout["sid_codes"] >= 0
        assert known.any() and (holdout["sid_weights"][known] == 1.0).all()
    assert_scorer_matches_ranker(settings.home, directory)  # the scorer leaves sid_importance aside


def test_parity_check_fails_with_error_beyond_tolerance(ranked, monkeypatch):
    assert run(ranked, "key:ranking_model").success
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)  # no export can be this exact
    result = run(ranked, "key:ranking_model_onnx")
    check = check_results(result)["ranking_model_onnx.ranking_model_onnx_parity"]
    assert not check.passed and check.severity.value == "ERROR" and "limit -1" in check.description


def test_bad_ranking_settings_fail_naming_the_key(settings_for):
    with pytest.raises(ConfigError, match=r"ranking.feature_set must be one of"):
        settings_for(ranking={"feature_set": "sids"})
    with pytest.raises(ConfigError, match=r"ranking.negatives must be uniform or popularity"):
        settings_for(ranking={"negatives": "hard"})
    with pytest.raises(ConfigError, match=r"ranking.model.hidden"):
        settings_for(ranking={"model": {"hidden": "wide"}})
