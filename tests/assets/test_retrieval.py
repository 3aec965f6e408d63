"""The generative retriever asset on the synthetic catalogue: one retriever per tokenizer, test metrics over
the full catalogue, a comparison report, checkpoints that load with weights_only; bad settings name their key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assets.retrieval import generation_order, retrieval_dir
from assets.sid_features import FeatureSet
from orchestration.settings import ConfigError, load_settings
from sid_models.ranking_data import ItemFeatures
from sid_models.retriever import RetrieverConfig, SidRetriever
from tests.assets.test_sid_tables import FAST_SASREC, FAST_TOKENIZERS, SID_GROUPS
from tests.helpers import SMALL_SYNTHETIC, materialised, run, write_config

FAST_RETRIEVAL = {"tokenizers": ["adc_sid", "rqkmeans"], "eval_beam": 20,
                  "model": {"max_history": 8, "d_model": 32, "n_heads": 2, "d_head": 16, "d_ff": 64,
                            "encoder_layers": 1, "decoder_layers": 1},
                  "train": {"epochs": 3, "batch_size": 128, "lr": 0.003, "valid_users": 100, "torch_threads": 2}}


def test_retrievers_train_per_tokenizer_and_report(tmp_path):
    settings = load_settings(config=write_config(tmp_path, synthetic=SMALL_SYNTHETIC, sasrec=FAST_SASREC,
                                                 tokenizers=FAST_TOKENIZERS, retrieval=FAST_RETRIEVAL),
                             home=tmp_path / "home")
    assert run(settings, SID_GROUPS).success
    result = run(settings, "key:generative_retriever")
    assert result.success and "generative_retriever" in materialised(result)
    directory = retrieval_dir(settings.home)
    for name in ("adc_sid", "rqkmeans"):
        version = (directory / name / "current").read_text()
        metrics = json.loads((directory / name / version / "metrics.json").read_text())
        assert metrics["tokenizer"] == name and len(metrics["history"]) >= 1
        test = metrics["test"]
        assert 0.0 <= test["recall@5"] <= test["recall@10"] <= 1.0 and test["ndcg@10"] <= test["recall@10"]
        assert {"recall@10_head", "recall@10_tail"} <= set(test)
        assert "recall@50" not in test  # the beam (20) is the longest list scored
        stored = torch.load(directory / name / version / "retriever.pt", weights_only=True)
        SidRetriever(RetrieverConfig(**stored["config"])).load_state_dict(stored["state"])
    report = (directory / "report.md").read_text()
    assert "| adc_sid |" in report and "| rqkmeans |" in report and "| popularity |" in report


def test_bad_retrieval_settings_fail_naming_the_key(settings_for):
    with pytest.raises(ConfigError, match=r"retrieval.tokenizers must be distinct names"):
        settings_for(retrieval={"tokenizers": ["adc_sid", "sids"]})
    with pytest.raises(ConfigError, match=r"retrieval.eval_beam must be >= 1"):
        settings_for(retrieval={"eval_beam": 0})
    with pytest.raises(ConfigError, match=r"retrieval.importance_floor must be in \[0, 1\], got 2.0"):
        settings_for(retrieval={"importance_floor": 2.0})
    with pytest.raises(ConfigError, match=r"retrieval.model.d_model"):
        settings_for(retrieval={"model": {"d_model": "wide"}})


def test_behavioral_tokens_are_generated_first_when_asked():
    codes = np.arange(3 * 6).reshape(3, 6)
    weights = np.linspace(0.1, 1.0, 18, dtype=np.float32).reshape(3, 6)
    features = FeatureSet(ItemFeatures(codes, weights), ["s0", "t0", "b0", "b1", "b2", "collision"],
                          [10, 20, 30, 40, 50, 4], "adc_sid-x", behavioral_positions=[2, 3, 4])
    order = generation_order(features, behavior_first=True)
    assert order == [2, 3, 4, 0, 1, 5]
    first = features.reordered(order)
    assert first.token_names == ["b0", "b1", "b2", "s0", "t0", "collision"]
    assert first.codebook_sizes == [30, 40, 50, 10, 20, 4] and first.behavioral_positions == [0, 1, 2]
    assert np.array_equal(first.items.codes, codes[:, order]) and np.array_equal(first.items.weights, weights[:, order])
    assert generation_order(features, behavior_first=False) == list(range(6))
    baseline = FeatureSet(ItemFeatures(codes[:, :4], weights[:, :4]), ["c0", "c1", "c2", "collision"], [10] * 4, "rq")
    assert generation_order(baseline, behavior_first=True) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="must permute the 6 SID positions"):
        features.reordered([0, 1, 2])
