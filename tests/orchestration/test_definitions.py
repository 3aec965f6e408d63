"""The Definitions load and list every asset, check, job, schedule and sensor; resources are configured."""

from __future__ import annotations

import importlib

import dagster as dg

ASSETS = {"raw_items", "raw_interactions", "items", "rejected_items", "interactions", "rejected_interactions",
          "item_stats", "splits", "content_embeddings", "sasrec_model", "behavior_embeddings", "sid_tokenizer",
          "rqvae_tokenizer", "rqkmeans_tokenizer", "opq_tokenizer", "sid_lookup", "baseline_sid_lookup",
          "sid_importance", "ranking_model", "ranking_model_onnx", "generative_retriever", "new_item_sids"}
SID_CHECKS = {"sid_lookup:sid_lookup_valid", "baseline_sid_lookup:baseline_sid_lookup_valid",
              "sid_importance:sid_importance_valid", "ranking_model_onnx:ranking_model_onnx_parity"}
CHECKS = {"items:items_hard_rules", "items:items_drift", "interactions:interactions_hard_rules",
          "interactions:interactions_drift", "content_embeddings:content_embeddings_valid",
          "behavior_embeddings:behavior_embeddings_valid", "new_item_sids:batch_hard_rules", *SID_CHECKS}
GROUPS = {"raw_items": "ingest", "raw_interactions": "ingest", **{k: "validated" for k in
          ("items", "rejected_items", "interactions", "rejected_interactions", "item_stats", "splits")},
          **{k: "features" for k in ("content_embeddings", "sasrec_model", "behavior_embeddings")},
          **{f"{k}_tokenizer": "tokenizer" for k in ("sid", "rqvae", "rqkmeans", "opq")},
          **{k: "sid_tables" for k in ("sid_lookup", "baseline_sid_lookup", "sid_importance")},
          "ranking_model": "downstream", "ranking_model_onnx": "export", "generative_retriever": "downstream",
          "new_item_sids": "refresh"}


def load_defs(monkeypatch, tmp_path) -> dg.Definitions:
    monkeypatch.setenv("SIDFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SIDFLOW_CONFIG", raising=False)
    import orchestration.definitions as module
    return importlib.reload(module).defs


def test_definitions_list_everything(monkeypatch, tmp_path):
    defs = load_defs(monkeypatch, tmp_path)
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys} == CHECKS
    assert {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()} == GROUPS
    assert {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")} == {"sidflow_job", "sid_refresh"}
    assert {s.name: s.job_name for s in repo.schedule_defs} == {"daily_sid_refresh": "sid_refresh",
                                                                 "weekly_retrain": "sidflow_job"}
    assert {s.name for s in repo.sensor_defs} == {"landed_items_sensor", "data_quality_alerts"}
    # The main job and the weekly retrain materialise every asset but the partitioned refresh.
    main = {k.to_user_string() for k in repo.get_job("sidflow_job").asset_layer.selected_asset_keys}
    assert main == ASSETS - {"new_item_sids"}
    blocking = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys
                if graph.get_check_spec(k).blocking}
    assert blocking == {"items:items_hard_rules", "interactions:interactions_hard_rules",
                        "content_embeddings:content_embeddings_valid", "behavior_embeddings:behavior_embeddings_valid",
                        *SID_CHECKS}


def test_resources_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SIDFLOW_DEVICE", "cpu")
    defs = load_defs(monkeypatch, tmp_path)
    resources = defs.resources
    assert resources["home"].home == str((tmp_path / "home").resolve())
    assert resources["home"].device == "cpu"
    assert resources["warehouse"].database == str((tmp_path / "home" / "warehouse.duckdb").resolve())
    assert resources["source"].kind == "synthetic"
    assert resources["quality"].max_invalid_fraction == 0.01  # from params.yaml
