"""SID tables (group `sid_tables`): every catalogue item's SID under the current tokenizer version.

- `sid_lookup` (ADC-SID) and `baseline_sid_lookup` (the baselines, with a `tokenizer` column): `item_id`,
  `tokenizer_version`, `sid` (one code per position, in the order of the version's token names), `collision`
  (the final token that makes each SID unique within the version: 0, 1, ... over items sharing the same codes,
  in item_id order), `sid_text` (e.g. `<s0_12><t0_3><b0_45><b1_7><b2_0><d_0>`), `origin` (`trained`: encoded
  by the tokenizer's own asset run; `incremental`: assigned to a new item by a refresh), `assigned_at`.
- `sid_importance`: per item and behavioral token, ADC-SID's weight R(e_b) (eq. 22).

A materialisation replaces the trained rows of its version and keeps other versions' rows and the items a
refresh added to this version (`origin = incremental`: their SIDs never change).
"""

from datetime import datetime, timezone

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from assets.resources import SidflowHome
from assets.tokenizers import BASELINE_KINDS, catalogue_features, load_current
from data_checks.checks import WAREHOUSE_POOL
from sid_models.sid_metrics import collision_tokens, quantization_metrics, sid_strings

GROUP = "sid_tables"
IMPORTANCE_COLUMNS = """item_id VARCHAR NOT NULL, tokenizer_version VARCHAR NOT NULL, token VARCHAR NOT NULL,
    position INTEGER NOT NULL, weight FLOAT NOT NULL"""

LOOKUP_COLUMNS = """item_id VARCHAR NOT NULL, tokenizer_version VARCHAR NOT NULL, sid INTEGER[] NOT NULL,
    collision INTEGER NOT NULL, sid_text VARCHAR NOT NULL, origin VARCHAR NOT NULL,
    assigned_at TIMESTAMP WITH TIME ZONE NOT NULL"""


def lookup_rows(item_ids: list[str], version: str, codes: np.ndarray, token_names: list[str],
                origin: str = "trained", collision: np.ndarray | None = None) -> pa.Table:
    collision = collision_tokens(codes) if collision is None else collision
    return pa.table({
        "item_id": pa.array(item_ids, pa.string()),
        "tokenizer_version": pa.array([version] * len(item_ids), pa.string()),
        "sid": pa.array(codes.astype(np.int32).tolist(), pa.list_(pa.int32())),
        "collision": pa.array(collision.astype(np.int32)),
        "sid_text": pa.array(sid_strings(codes, token_names, collision), pa.string()),
        "origin": pa.array([origin] * len(item_ids), pa.string()),
        "assigned_at": pa.array([datetime.now(timezone.utc)] * len(item_ids), pa.timestamp("us", tz="UTC"))})


def replace_version(con: duckdb.DuckDBPyConnection, table: str, columns: str, rows: pa.Table, version: str,
                    tokenizer: str | None = None) -> None:
    """Swap in the trained rows of one version (of one tokenizer, for the baseline table) in one transaction.
    ADC-SID's items that a refresh added to the version keep their rows, and the trained rows skip them."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    params = {"version": version, **({"tokenizer": tokenizer} if tokenizer else {})}
    this_version = "tokenizer_version = $version" + (" AND tokenizer = $tokenizer" if tokenizer else "")
    refreshed = ""
    if tokenizer is None:  # ADC-SID's tables: sid_lookup names the items a refresh added to this version
        con.execute(f"CREATE TABLE IF NOT EXISTS sid_lookup ({LOOKUP_COLUMNS})")
        refreshed = (" AND item_id NOT IN (SELECT item_id FROM sid_lookup "
                     "WHERE tokenizer_version = $version AND origin = 'incremental')")
    con.execute("BEGIN")
    con.execute(f"DELETE FROM {table} WHERE {this_version}{refreshed}", params)
    con.register("new_rows", rows)
    con.execute(f"""INSERT INTO {table} BY NAME SELECT * FROM new_rows
                    WHERE item_id NOT IN (SELECT item_id FROM {table} WHERE {this_version})""", params)
    con.unregister("new_rows")
    con.execute("COMMIT")


def importance_rows(item_ids: list[str], version: str, tokenizer, weights: np.ndarray | None) -> pa.Table:
    """sid_importance rows: one per item and behavioral token (none when the tokenizer has no behavioral
    experts, an ablation)."""
    if weights is None:
        weights = np.zeros((len(item_ids), 0), dtype=np.float32)
    # ADC-SID orders its behavioral tokens last.
    positions = np.arange(len(tokenizer.token_names))[len(tokenizer.token_names) - weights.shape[1]:]
    behavioral = [tokenizer.token_names[p] for p in positions]
    return pa.table({
        "item_id": pa.array(np.repeat(np.asarray(item_ids, dtype=object), weights.shape[1]), pa.string()),
        "tokenizer_version": pa.array([version] * weights.size, pa.string()),
        "token": pa.array(np.tile(np.asarray(behavioral, dtype=object), len(item_ids)), pa.string()),
        "position": pa.array(np.tile(positions, len(item_ids)), pa.int32()),
        "weight": pa.array(weights.reshape(-1).astype(np.float32))})


def _encode_current(home: SidflowHome, kind: str, features: dict):
    version, tokenizer = load_current(home, kind)
    return version, tokenizer, tokenizer.encode(features)


def _lookup_metadata(version: str, codes: np.ndarray, tokenizer, rows: int) -> dict:
    metrics = quantization_metrics(codes, tokenizer.codebook_sizes)
    return {"tokenizer_version": version, "dagster/row_count": rows, "token_names": tokenizer.token_names,
            "collision_rate": round(metrics["collision_rate"], 4),
            "max_collision_group": int(metrics["max_collision_group"])}


@dg.asset(group_name=GROUP, deps=["sid_tokenizer"], pool=WAREHOUSE_POOL, kinds={"duckdb"})
def sid_lookup(warehouse: DuckDBResource, home: SidflowHome) -> dg.MaterializeResult:
    """Every catalogue item's ADC-SID under the current `sid_tokenizer` version, with its collision token."""
    item_ids, features, _ = catalogue_features(warehouse, home)
    version, tokenizer, codes = _encode_current(home, "adc_sid", features)
    rows = lookup_rows(item_ids, version, codes, tokenizer.token_names)
    with warehouse.get_connection() as con:
        replace_version(con, "sid_lookup", LOOKUP_COLUMNS, rows, version)
        preview = con.execute("SELECT item_id, sid_text FROM sid_lookup WHERE tokenizer_version = ? "
                              "ORDER BY item_id LIMIT 5", [version]).fetchall()
    return dg.MaterializeResult(metadata={**_lookup_metadata(version, codes, tokenizer, rows.num_rows),
                                          "preview": dg.MetadataValue.md("\n".join(
                                              f"- `{item}` {text}" for item, text in preview))})


@dg.asset(group_name=GROUP, deps=[f"{kind}_tokenizer" for kind in BASELINE_KINDS], pool=WAREHOUSE_POOL,
          kinds={"duckdb"})
def baseline_sid_lookup(warehouse: DuckDBResource, home: SidflowHome) -> dg.MaterializeResult:
    """The baselines' SIDs (`tokenizer`: rqvae, rqkmeans, opq) in the layout of `sid_lookup`."""
    metadata, written = {}, 0
    item_ids, features, _ = catalogue_features(warehouse, home)  # read once for every baseline
    for kind in BASELINE_KINDS:
        version, tokenizer, codes = _encode_current(home, kind, features)
        rows = lookup_rows(item_ids, version, codes, tokenizer.token_names)
        rows = rows.append_column("tokenizer", pa.array([kind] * rows.num_rows, pa.string()))
        with warehouse.get_connection() as con:
            replace_version(con, "baseline_sid_lookup", LOOKUP_COLUMNS + ", tokenizer VARCHAR NOT NULL", rows,
                            version, tokenizer=kind)
        metadata[kind] = dg.MetadataValue.json(_lookup_metadata(version, codes, tokenizer, rows.num_rows))
        written += rows.num_rows
    return dg.MaterializeResult(metadata={"dagster/row_count": written, **metadata})


@dg.asset(group_name=GROUP, deps=["sid_tokenizer"], pool=WAREHOUSE_POOL, kinds={"duckdb"})
def sid_importance(warehouse: DuckDBResource, home: SidflowHome) -> dg.MaterializeResult:
    """Per item and behavioral token of the current ADC-SID version, the importance weight R(e_b) (eq. 22):
    low where the behavioral embedding is weak (tail items), for downstream models to down-weight."""
    version, tokenizer = load_current(home, "adc_sid")
    item_ids, features, _ = catalogue_features(warehouse, home)
    weights = tokenizer.importance(features)
    rows = importance_rows(item_ids, version, tokenizer, weights)
    weights = np.zeros((len(item_ids), 0), np.float32) if weights is None else weights
    behavioral = tokenizer.token_names[len(tokenizer.token_names) - weights.shape[1]:]
    with warehouse.get_connection() as con:
        replace_version(con, "sid_importance", IMPORTANCE_COLUMNS, rows, version)
    return dg.MaterializeResult(metadata={
        "tokenizer_version": version, "dagster/row_count": rows.num_rows, "tokens": behavioral,
        "mean_weight": dg.MetadataValue.json(dict(zip(behavioral, weights.mean(axis=0).round(4).tolist()))),
        "zero_share": round(float((weights == 0).mean()), 4) if weights.size else 0.0})


SID_TABLE_ASSETS = [sid_lookup, baseline_sid_lookup, sid_importance]
