"""Group `refresh`: SIDs for new items without retraining, one dynamic partition per landed file.

`new_item_sids[<file name>]` lands the file from the landing folder, checks it with the catalogue's item rules
(check `batch_hard_rules`), encodes the items that have no SID of the current ADC-SID version with the frozen
tokenizer (`assets/incremental_sids.py`), and appends them to `sid_lookup` and `sid_importance` with
`origin = incremental`, and their item rows to `landed_items`, in one transaction. Existing rows never change,
so a batch processed again adds nothing. A batch that breaks the rules beyond `max_invalid_fraction`, or cannot
be read, fails the run with the check's counts and leaves every table as it was; the file stays in the landing
folder and the reasons go to `landing/rejected/<file>.json` under SIDFLOW_HOME.
"""

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from assets import incremental_sids, landed_batch
from assets.resources import FeatureSettings, RefreshSettings, SidflowHome
from assets.sid_tables import IMPORTANCE_COLUMNS, LOOKUP_COLUMNS
from assets.sources.raw_tables import SourceError
from assets.tokenizers import load_current
from data_checks import suites
from data_checks.checks import WAREHOUSE_POOL, hard_rules_result
from data_checks.rules import QualityRules

GROUP = "refresh"
BATCH_CHECK = "batch_hard_rules"
landed_item_batches = dg.DynamicPartitionsDefinition(name="landed_item_batches")

BATCH_COLUMNS = """batch VARCHAR NOT NULL, load_batch VARCHAR NOT NULL, tokenizer_version VARCHAR NOT NULL,
    file_rows BIGINT NOT NULL, new_items BIGINT NOT NULL, known_items BIGINT NOT NULL, rejected_rows BIGINT NOT NULL,
    processed_at TIMESTAMP WITH TIME ZONE NOT NULL"""
REJECTED_COLUMNS = """batch VARCHAR NOT NULL, load_batch VARCHAR NOT NULL, source_row BIGINT NOT NULL, item_id VARCHAR,
    raw_line VARCHAR, reason VARCHAR NOT NULL"""
LANDED_COLUMNS = """item_id VARCHAR NOT NULL, title VARCHAR, categories VARCHAR, brand VARCHAR, description VARCHAR,
    batch VARCHAR NOT NULL, load_batch VARCHAR NOT NULL, source_row BIGINT NOT NULL"""


def batch_path(refresh: RefreshSettings, home: SidflowHome, key: str) -> Path:
    """The landed file of partition `key`: a plain file name inside the landing folder, never a path."""
    if not key or Path(key).name != key or key in (".", ".."):
        raise dg.Failure(f"partition key {key!r} is not a file name in the landing folder")
    return refresh.landing_path(home) / key


@dg.asset(group_name=GROUP, partitions_def=landed_item_batches, deps=["sid_lookup", "sid_importance"],
          pool=WAREHOUSE_POOL, kinds={"duckdb"},
          check_specs=[dg.AssetCheckSpec(BATCH_CHECK, asset="new_item_sids", description=(
              "The landed batch against the catalogue's item rules: readable records, item_id present and "
              "unique. A failing batch changes no table."))])
def new_item_sids(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                  quality: QualityRules, features: FeatureSettings, refresh: RefreshSettings):
    """SIDs of the current ADC-SID version for the items of one landed file that have none yet."""
    key = context.partition_key
    path = batch_path(refresh, home, key)
    started = time.perf_counter()
    with warehouse.get_connection() as con:
        try:
            try:
                batch = landed_batch.land_batch(con, path, quality)
            except (SourceError, ValueError) as err:  # unreadable: nothing to validate row by row
                yield dg.AssetCheckResult(check_name=BATCH_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                          description=str(err), metadata={"rows": 0, "failing_rows": 0})
                _reject(home, key, {"error": str(err)})
                raise dg.Failure(f"batch {key} rejected: {err}", metadata={"check": BATCH_CHECK}) from err
            check = hard_rules_result(con, batch.outcome, suites.item_rules(quality), landed_batch.REJECTED,
                                      check_name=BATCH_CHECK, extra_metadata={"rejected_rows": batch.rejected})
            yield check
            counts = {"rows": batch.rows, "rejected_rows": batch.rejected,
                      "failing_rows": check.metadata["failing_rows"].value}
            if not check.passed:
                _reject(home, key, {"load_batch": batch.load_batch, **counts, "description": check.description,
                                    "rejected": _rejected_rows(con)})
                raise dg.Failure(f"batch {key} rejected: {check.description}",
                                 metadata={"check": BATCH_CHECK, **counts})
            summary = _assign_and_write(context, con, home, features, key, batch)
        finally:
            landed_batch.detach(con)
            con.close()  # DuckDBResource closes only on success; a failed batch must not hold the file
    summary["seconds"] = round(time.perf_counter() - started, 3)
    yield dg.MaterializeResult(metadata=summary)


def _assign_and_write(context, con: duckdb.DuckDBPyConnection, home: SidflowHome, features: FeatureSettings,
                      key: str, batch: landed_batch.LandedBatch) -> dict:
    version, tokenizer = load_current(home, "adc_sid")
    for table, columns in (("sid_lookup", LOOKUP_COLUMNS), ("sid_importance", IMPORTANCE_COLUMNS),
                           ("landed_items", LANDED_COLUMNS), ("refresh_batches", BATCH_COLUMNS),
                           ("rejected_landed_items", REJECTED_COLUMNS)):
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    item_ids, fields = incremental_sids.new_item_rows(con, version)
    known = batch.valid - len(item_ids)
    context.log.info(f"batch {key}: {batch.rows} rows, {len(item_ids)} new items, {known} already have a SID "
                     f"of {version}, {batch.rejected} rejected rows")
    inputs = incremental_sids.batch_features(con, batch, home, features, item_ids, fields) if item_ids else None
    lookup, importance = (incremental_sids.assign(con, version, tokenizer, item_ids, inputs) if item_ids
                          else (None, None))
    seen = con.execute("SELECT count(*) FROM refresh_batches WHERE batch = ? AND load_batch = ? "
                       "AND tokenizer_version = ?", [key, batch.load_batch, version]).fetchall()[0][0]
    if item_ids or not seen:  # a batch processed again with nothing new writes nothing
        _write(con, key, batch, version, lookup, importance, known)
    metadata = {"tokenizer_version": version, "new_items": len(item_ids), "known_items": known,
                "rejected_rows": batch.rejected, "file_rows": batch.rows, "load_batch": batch.load_batch,
                "dagster/row_count": len(item_ids)}
    if inputs is not None:
        metadata["feature_sources"] = dg.MetadataValue.json(inputs.sources)
        metadata["fallback_rows"] = dg.MetadataValue.json(inputs.fallback_rows)
        metadata["preview"] = dg.MetadataValue.md("\n".join(
            f"- `{item}` {text}" for item, text in zip(lookup.column("item_id").to_pylist()[:5],
                                                        lookup.column("sid_text").to_pylist()[:5])))
    return metadata


def _write(con: duckdb.DuckDBPyConnection, key: str, batch: landed_batch.LandedBatch, version: str,
           lookup: pa.Table | None, importance: pa.Table | None, known: int) -> None:
    con.execute("BEGIN")
    try:
        if lookup is not None:
            for table, rows in (("sid_lookup", lookup), ("sid_importance", importance)):
                con.register("new_rows", rows)
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new_rows")
                con.unregister("new_rows")
            con.execute(f"""INSERT INTO landed_items
                SELECT item_id, title, categories, brand, description, ?, ?, source_row FROM {landed_batch.VALID}
                WHERE item_id NOT IN (SELECT item_id FROM landed_items)""", [key, batch.load_batch])
        con.execute(f"""INSERT INTO rejected_landed_items
            SELECT ?, ?, source_row, item_id, raw_line, reason FROM {landed_batch.REJECTED}
            WHERE NOT EXISTS (SELECT 1 FROM rejected_landed_items WHERE load_batch = ?)""",
                    [key, batch.load_batch, batch.load_batch])
        con.execute("INSERT INTO refresh_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [key, batch.load_batch, version, batch.rows, 0 if lookup is None else lookup.num_rows, known,
                     batch.rejected, datetime.now(timezone.utc)])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _rejected_rows(con: duckdb.DuckDBPyConnection, limit: int = 1000) -> list[dict]:
    frame = con.execute(f"SELECT source_row, item_id, raw_line, reason FROM {landed_batch.REJECTED} "
                        f"ORDER BY source_row LIMIT {limit}").df()
    return json.loads(frame.to_json(orient="records"))


def _reject(home: SidflowHome, key: str, report: dict) -> None:
    """The reasons a batch was refused, beside the landing folder (the tables stay untouched)."""
    directory = home.home_path / "landing" / "rejected"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{key}.json").write_text(json.dumps({"batch": key, **report}, indent=2, default=str))
