"""Dagster asset checks built on the GX suites. Hard rules are blocking with ERROR severity: when more
than `max_invalid_fraction` of a landed batch breaks one, assets downstream of the checked table do not
materialise. Drift rules (rejected share, volume change against the previous load) warn."""


import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from data_checks import suites
from data_checks.rules import QualityRules
from data_checks.sql import scalar

WAREHOUSE_POOL = "sidflow_warehouse"  # DuckDB allows one writing process per file
EXAMPLE_ROWS = 5


def hard_rules_result(con: duckdb.DuckDBPyConnection, outcome: suites.SuiteOutcome, rules: list[suites.Rule],
                      rejected_table: str, check_name: str | None = None,
                      extra_metadata: dict | None = None) -> dg.AssetCheckResult:
    """Check result with the failing expectations, their counts and a few offending rows per rule."""
    reasons = {r.name: r.reasons for r in rules}
    failed = outcome.failed
    metadata: dict = {
        "rows": dg.MetadataValue.int(outcome.rules[0].rows if outcome.rules else 0),
        "failing_rows": dg.MetadataValue.int(sum(r.failing for r in failed)),  # over the failing rules
        "rules": dg.MetadataValue.md(_rules_table(outcome)),
        **(extra_metadata or {}),
    }
    if failed:
        metadata["failing_expectations"] = dg.MetadataValue.json(
            [{"rule": r.name, "expectation": r.expectation, "column": r.column, "failing_rows": r.failing,
              "failing_fraction": round(r.failing_fraction, 6), "allowed_fraction": r.allowed_fraction} for r in failed])
        examples = {r.name: offending_rows(con, rejected_table, reasons[r.name]) for r in failed}
        metadata["offending_rows"] = dg.MetadataValue.json(examples)
    description = ("all hard rules hold within tolerance" if not failed else
                   "failing: " + ", ".join(f"{r.name} ({r.failing} of {r.rows} rows)" for r in failed))
    return dg.AssetCheckResult(passed=not failed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
                               description=description, check_name=check_name)


def run_hard_rules(warehouse: DuckDBResource, suite: str, rules: list[suites.Rule], frame_sql: str,
                   rejected_table: str) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        outcome = suites.validate(suite, rules, suites.chunks(con, frame_sql))
        return hard_rules_result(con, outcome, rules, rejected_table)


def offending_rows(con: duckdb.DuckDBPyConnection, table: str, patterns: tuple[str, ...]) -> list[dict]:
    if not patterns:
        return []
    where = " OR ".join("reason LIKE ?" for _ in patterns)
    frame = con.execute(f"""SELECT * EXCLUDE (load_batch) FROM {table} WHERE {where}
                            ORDER BY source_file, source_row LIMIT {EXAMPLE_ROWS}""", list(patterns)).df()
    keep = [c for c in frame.columns if c in ("source_file", "source_row", "user_id", "item_id", "timestamp",
                                              "rating", "title", "raw_line", "reason")]
    return [{k: (None if pd.isna(v) else v if isinstance(v, (int, float, str)) else str(v)) for k, v in row.items()}
            for row in frame[keep].to_dict(orient="records")]


def drift_result(con: duckdb.DuckDBPyConnection, quality: QualityRules, raw: str, rejected: str) -> dg.AssetCheckResult:
    """Share of rejected rows and volume change of this load against the previous one, validated by GX."""
    raw_rows = scalar(con, f"SELECT count(*) FROM {raw}")
    rejected_rows = scalar(con, f"SELECT count(*) FROM {rejected}")
    previous = previous_load_rows(con, raw)
    frame = pd.DataFrame({
        "rejected_fraction": [rejected_rows / raw_rows if raw_rows else 0.0],
        "volume_change": [raw_rows / previous - 1.0 if previous else float("nan")],
    })
    outcome = suites.validate(f"{raw}_drift", suites.drift_rules(quality), [frame])
    metadata = {"raw_rows": raw_rows, "rejected_rows": rejected_rows,
                "rejected_fraction": float(frame.rejected_fraction[0]),
                "previous_load_rows": dg.MetadataValue.int(previous) if previous else dg.MetadataValue.text("none"),
                "rules": dg.MetadataValue.md(_rules_table(outcome))}
    if previous:
        metadata["volume_change"] = float(frame.volume_change[0])
    return dg.AssetCheckResult(passed=outcome.passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
                               description="drift within bounds" if outcome.passed else
                               "drift: " + ", ".join(r.name for r in outcome.failed))


def previous_load_rows(con: duckdb.DuckDBPyConnection, raw: str) -> int | None:
    """Rows of the latest earlier load of another batch (a rerun of the same input is not a change)."""
    return scalar(con, f"""SELECT rows FROM load_history
                            WHERE table_name = ? AND load_batch <> (SELECT any_value(load_batch) FROM {raw})
                            ORDER BY loaded_at DESC LIMIT 1""", [raw])


def _rules_table(outcome: suites.SuiteOutcome) -> str:
    lines = ["| rule | expectation | failing rows | rows | allowed share | passed |", "|---|---|---|---|---|---|"]
    for r in outcome.rules:
        lines.append(f"| {r.name} | {r.expectation} | {r.failing} | {r.rows} | {r.allowed_fraction:g} | "
                     f"{'yes' if r.passed else 'NO'} |")
    return "\n".join(lines)


@dg.asset_check(asset="interactions", blocking=True, pool=WAREHOUSE_POOL,
                description="Hard rules on the landed interactions: readable records, ids present, timestamps "
                            "parsable and in range, ratings numeric and in range, items in the catalogue, "
                            "unique (user, item, timestamp). Blocking (ERROR) above max_invalid_fraction.")
def interactions_hard_rules(warehouse: DuckDBResource, quality: QualityRules) -> dg.AssetCheckResult:
    return run_hard_rules(warehouse, "interactions_hard", suites.interaction_rules(quality),
                          suites.interaction_frame_sql(quality), "rejected_interactions")


@dg.asset_check(asset="items", blocking=True, pool=WAREHOUSE_POOL,
                description="Hard rules on the landed items: readable records, item_id present and unique. "
                            "Blocking (ERROR) above max_invalid_fraction.")
def items_hard_rules(warehouse: DuckDBResource, quality: QualityRules) -> dg.AssetCheckResult:
    return run_hard_rules(warehouse, "items_hard", suites.item_rules(quality), suites.item_frame_sql(), "rejected_items")


@dg.asset_check(asset="interactions", pool=WAREHOUSE_POOL,
                description="Drift (WARN): share of rejected interactions; row count against the previous load.")
def interactions_drift(warehouse: DuckDBResource, quality: QualityRules) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        return drift_result(con, quality, "raw_interactions", "rejected_interactions")


@dg.asset_check(asset="items", pool=WAREHOUSE_POOL,
                description="Drift (WARN): share of rejected items; row count against the previous load.")
def items_drift(warehouse: DuckDBResource, quality: QualityRules) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        return drift_result(con, quality, "raw_items", "rejected_items")


ASSET_CHECKS = [items_hard_rules, items_drift, interactions_hard_rules, interactions_drift]
