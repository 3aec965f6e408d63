"""The tokenizer and SID-table groups materialised on the synthetic catalogue: every item gets one unique SID,
importance weights are valid, the checks pass, a refit with the same inputs reproduces the version, and bad
tokenizer settings fail at load time naming the key."""

from __future__ import annotations

import pytest

from orchestration.settings import ConfigError
from tests.helpers import check_results, materialised, query, run

FAST_SASREC = {"model": {"hidden": 16, "layers": 1, "heads": 1}, "train": {"epochs": 2, "torch_threads": 2}}
FAST_TOKENIZERS = {"adc_sid": {"model": {"codebook_size": 16, "hidden_dim": 64, "expert_hidden": 32},
                               "train": {"epochs": 8, "batch_size": 128, "torch_threads": 2}},
                   "rqvae": {"codebook_size": 16, "epochs": 5, "encoder_hidden": [64, 32], "latent_dim": 16},
                   "rqkmeans": {"codebook_size": 16}, "opq": {"codebook_size": 16}}
SID_GROUPS = "group:ingest or group:validated or group:features or group:tokenizer or group:sid_tables"


def test_every_item_gets_one_unique_sid(settings_for):
    settings = settings_for(sasrec=FAST_SASREC, tokenizers=FAST_TOKENIZERS)
    result = run(settings, SID_GROUPS)
    assert result.success
    assert {"sid_tokenizer", "rqvae_tokenizer", "sid_lookup", "baseline_sid_lookup", "sid_importance"} <= \
        materialised(result)
    checks = check_results(result)
    for name in ("sid_lookup.sid_lookup_valid", "baseline_sid_lookup.baseline_sid_lookup_valid",
                 "sid_importance.sid_importance_valid"):
        assert checks[name].passed, checks[name].description
    [(items,)] = query(settings, "SELECT count(*) FROM items")
    [(rows, unique, versions, origin)] = query(settings, """SELECT count(*), count(DISTINCT sid_text),
        count(DISTINCT tokenizer_version), min(origin) FROM sid_lookup""")
    assert rows == unique == items and versions == 1 and origin == "trained"
    # s0, t0, v0 (synthetic text and visual), b0-b2, then the collision token d.
    [(text,)] = query(settings, "SELECT sid_text FROM sid_lookup ORDER BY item_id LIMIT 1")
    assert [part.split("_")[0] for part in text.strip("<>").split("><")] == ["s0", "t0", "v0", "b0", "b1", "b2", "d"]
    assert query(settings, "SELECT DISTINCT tokenizer FROM baseline_sid_lookup ORDER BY 1") == \
        [("opq",), ("rqkmeans",), ("rqvae",)]
    [(weights, low, tokens)] = query(settings, "SELECT count(*), min(weight), count(DISTINCT token) FROM sid_importance")
    assert weights == 3 * items and low >= 0 and tokens == 3

    # Same features and settings on the CPU: the same checkpoint bytes, so the same version and SIDs.
    before = query(settings, "SELECT item_id, tokenizer_version, sid_text FROM sid_lookup ORDER BY item_id")
    assert run(settings, "key:sid_tokenizer or key:sid_lookup").success
    assert query(settings, "SELECT item_id, tokenizer_version, sid_text FROM sid_lookup ORDER BY item_id") == before


def test_bad_tokenizer_settings_fail_before_training(settings_for):
    with pytest.raises(ConfigError, match=r"tokenizers.adc_sid.model: unknown settings \['codebook_sise'\]"):
        settings_for(tokenizers={"adc_sid": {"model": {"codebook_sise": 10}}})
    with pytest.raises(ConfigError, match="tokenizers.rqvae"):
        settings_for(tokenizers={"rqvae": {"levels": 0}})
