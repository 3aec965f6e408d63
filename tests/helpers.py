"""Helpers shared by the tests: run configs in a temporary SIDFLOW_HOME, in-process runs on an ephemeral
instance, and warehouse queries."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import yaml

from orchestration.cli import run_pipeline
from orchestration.settings import RunSettings

SMALL_SYNTHETIC = {"users": 300, "items": 200, "events": 3000, "clusters": 8, "seed": 3}
# Everything downstream of `interactions`: what a failing blocking check on it must keep from running.
BLOCKED_BY_INTERACTIONS = ['baseline_sid_lookup', 'behavior_embeddings', 'generative_retriever', 'item_stats', 'opq_tokenizer', 'ranking_model', 'ranking_model_onnx', 'rqkmeans_tokenizer', 'rqvae_tokenizer', 'sasrec_model', 'sid_importance', 'sid_lookup', 'sid_tokenizer', 'splits']
AMAZON_BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty"


def write_config(directory: Path, **sections) -> Path:
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path




def run(settings: RunSettings, selection: str | None = None) -> dg.ExecuteInProcessResult:
    return run_pipeline(settings, selection=selection, instance=dg.DagsterInstance.ephemeral())


def query(settings: RunSettings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.home.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.to_user_string()}.{e.check_name}": e for e in result.get_asset_check_evaluations()}


def materialised(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
