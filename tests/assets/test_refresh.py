"""The incremental refresh on the synthetic catalogue: new items get SIDs of the frozen tokenizer, nothing that
existed changes, a batch processed again changes nothing, and a bad batch changes no table."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow.parquet as pq

from assets.feature_store import features_dir, read_matrix
from assets.sources import synthetic
from assets.sources.landing import synthetic_params
from assets.tokenizers import load_current
from orchestration.build import build_definitions
from orchestration.operations import REFRESH_JOB
from orchestration.settings import RunSettings
from tests.helpers import run

BATCHES = "landed_item_batches"


def landing(settings: RunSettings) -> Path:
    path = settings.refresh.landing_path(settings.home)
    path.mkdir(parents=True, exist_ok=True)
    return path


def land_arrivals(settings: RunSettings, name: str, count: int, first_index: int | None = None, batch: int = 0) -> Path:
    from assets.sources.synthetic_arrivals import arrivals

    table = arrivals(synthetic_params(settings.source), count, first_index, batch)
    path = landing(settings) / name
    if name.endswith(".parquet"):
        pq.write_table(table, path)
    else:
        path.write_text(table.to_pandas().to_json(orient="records", lines=True))
    return path


def refresh(settings: RunSettings, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    if key not in instance.get_dynamic_partitions(BATCHES):
        instance.add_dynamic_partitions(BATCHES, [key])
    job = build_definitions(settings).resolve_job_def(REFRESH_JOB)
    return job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)


def snapshot(settings: RunSettings) -> dict[str, list[tuple]]:
    """Every table of the warehouse, every column, in a fixed row order."""
    with duckdb.connect(str(settings.home.warehouse_path), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
                                            "ORDER BY table_name").fetchall()]
        return {t: [tuple(tuple(v) if isinstance(v, list) else v for v in row)
                    for row in con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()] for t in tables}


def test_refresh_assigns_sids_only_to_new_items(sid_home):
    settings, instance = sid_home, dg.DagsterInstance.ephemeral()
    before = snapshot(settings)
    version, tokenizer = load_current(settings.home, "adc_sid")
    catalogue = len(before["items"])
    land_arrivals(settings, "batch-1.parquet", 6)
    # The second file repeats two catalogue items and the first file's six: only its last two are new.
    land_arrivals(settings, "batch-2.jsonl", 10, first_index=catalogue - 2, batch=1)

    result = refresh(settings, instance, "batch-1.parquet")
    assert result.success
    first = snapshot(settings)
    lookup_before = set(before["sid_lookup"])
    assert lookup_before <= set(first["sid_lookup"])  # existing rows unchanged, column for column
    added = [row for row in first["sid_lookup"] if row not in lookup_before]
    assert len(added) == 6 and {row[1] for row in added} == {version} and {row[5] for row in added} == {"incremental"}
    assert len(first["sid_importance"]) == len(before["sid_importance"]) + 6 * 3
    with duckdb.connect(str(settings.home.warehouse_path), read_only=True) as con:
        [(rows, unique)] = con.execute("SELECT count(*), count(DISTINCT (sid, collision)) FROM sid_lookup "
                                       "WHERE tokenizer_version = ?", [version]).fetchall()
    assert rows == unique == catalogue + 6
    # The frozen tokenizer's own codes for the landed vectors, with zero behavior (the documented fallback).
    table = pq.read_table(landing(settings) / "batch-1.parquet")
    features = {m: np.stack(table.column(f"{m}_embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
                for m in synthetic.MODALITIES}
    behavior_dim = read_matrix(features_dir(settings.home.home_path), "behavior").vectors.shape[1]
    features["behavior"] = np.zeros((6, behavior_dim), np.float32)
    assert np.array_equal(np.array([row[2] for row in sorted(added)]), tokenizer.encode(features))
    metadata = result.asset_materializations_for_node("new_item_sids")[0].metadata
    assert metadata["new_items"].value == 6 and metadata["fallback_rows"].value["behavior"] == 6

    assert refresh(settings, instance, "batch-1.parquet").success
    assert snapshot(settings) == first  # the same batch again: a no-op, in every table

    assert refresh(settings, instance, "batch-2.jsonl").success
    second = snapshot(settings)
    assert set(first["sid_lookup"]) <= set(second["sid_lookup"])
    assert len(second["sid_lookup"]) == len(first["sid_lookup"]) + 2
    assert sorted((row[0], row[4], row[5]) for row in second["refresh_batches"]) == [
        ("batch-1.parquet", 6, 0), ("batch-2.jsonl", 2, 8)]  # (batch, new items, known items), once each

    # Rebuilding the version's SID tables keeps the refreshed items, and their checks still hold.
    rebuilt = run(settings, "key:sid_lookup or key:sid_importance")
    assert rebuilt.success and all(e.passed for e in rebuilt.get_asset_check_evaluations())
    incremental = [row for row in second["sid_lookup"] if row[5] == "incremental"]
    assert [row for row in snapshot(settings)["sid_lookup"] if row[5] == "incremental"] == incremental
    assert len(snapshot(settings)["sid_importance"]) == len(second["sid_importance"])


def test_a_bad_batch_changes_no_table(sid_home):
    settings, instance = sid_home, dg.DagsterInstance.ephemeral()
    lines = ["item_id,title"] + [f",untitled {i}" for i in range(4)] + ["i0999999,a real one"]
    (landing(settings) / "broken.csv").write_text("\n".join(lines) + "\n")
    before = snapshot(settings)
    result = refresh(settings, instance, "broken.csv")
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("batch_hard_rules", False)
    assert evaluation.metadata["failing_rows"].value == 4 and evaluation.metadata["rows"].value == 5
    assert snapshot(settings) == before
    report = json.loads((settings.home.home_path / "landing" / "rejected" / "broken.csv.json").read_text())
    assert report["failing_rows"] == 4 and {row["reason"] for row in report["rejected"]} == {"item_id: missing"}
    assert (landing(settings) / "broken.csv").is_file()  # the data stays where it landed
