"""`sasrec_model` and `behavior_embeddings` on the synthetic catalogue: trained on train rows only, better
than popularity on the planted sequences, finite embeddings with a truthful norm-popularity figure.

That norms grow with popularity on a long-tail catalogue is tested on the model itself
(tests/sid_models/test_sasrec.py); the built-in catalogue plants a successor for every item, so tail items are
as informative as head items and its correlation is near zero."""

from __future__ import annotations

import json

import numpy as np

from assets.behavior import load_leave_one_out, sasrec_dir
from assets.feature_store import features_dir, read_matrix
from sid_models.metrics import spearman
from tests.helpers import check_results, materialised, query, run

FAST_SASREC = {"model": {"hidden": 32, "layers": 1, "heads": 1, "dropout": 0.2},
               "train": {"epochs": 12, "patience": 4, "batch_size": 64, "lr": 0.003, "torch_threads": 2}}
SYNTHETIC = {"users": 600, "items": 150, "events": 9000, "clusters": 6, "seed": 1, "sequential_strength": 0.8}


def test_sasrec_and_behavior_embeddings(settings_for):
    settings = settings_for(synthetic=SYNTHETIC, sasrec=FAST_SASREC)
    result = run(settings, "group:ingest or group:validated or key:sasrec_model or key:behavior_embeddings")
    assert result.success
    assert {"sasrec_model", "behavior_embeddings"} <= materialised(result)
    assert check_results(result)["behavior_embeddings.behavior_embeddings_valid"].passed

    metrics = json.loads((sasrec_dir(settings.home) / "metrics.json").read_text())
    assert metrics["test"]["ndcg@10"] > 2 * metrics["popularity_test"]["ndcg@10"]
    assert metrics["device"] == "cpu" and metrics["history"]

    behavior = read_matrix(features_dir(settings.home.home_path), "behavior")
    assert behavior.vectors.shape == (150, 32) and np.isfinite(behavior.vectors).all()
    metadata = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == "behavior_embeddings").materialization.metadata
    train_counts = np.array([c for (c,) in query(settings, """
        SELECT count(s.item_id) FILTER (s.loo_split = 'train') FROM items i LEFT JOIN splits s USING (item_id)
        GROUP BY i.item_id ORDER BY i.item_id""")])
    trained = train_counts > 0
    assert (behavior.fallback == ~trained).all() and (behavior.vectors[~trained] == 0).all()
    expected = spearman(np.linalg.norm(behavior.vectors[trained], axis=1), train_counts[trained])
    assert metadata["spearman_norm_popularity"].value == round(expected, 4)


def test_training_sees_only_train_rows(settings_for):
    settings = settings_for(synthetic=SYNTHETIC)
    assert run(settings, "group:ingest or group:validated").success
    data, n_items = load_leave_one_out(settings.resources()["warehouse"])
    train_rows, held_out = query(settings, """SELECT count(*) FILTER (loo_split = 'train'),
                                              count(*) FILTER (loo_split <> 'train') FROM splits""")[0]
    assert len(data.train.items) == train_rows and len(data.valid.target) + len(data.test.target) == held_out
    # Per user, the training sequence is exactly the train rows in sequence order.
    expected = query(settings, """SELECT string_agg(item_id, ' ' ORDER BY seq_pos) FROM splits
                                  WHERE loo_split = 'train' GROUP BY user_id ORDER BY user_id""")
    catalogue = [i for (i,) in query(settings, "SELECT item_id FROM items ORDER BY item_id")]
    got = [" ".join(catalogue[i - 1] for i in data.train.row(r)) for r in range(data.train.n_rows)]
    assert got == [e for (e,) in expected]
