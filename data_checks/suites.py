"""Great Expectations 1.x suites for the landed batches, run on DataFrames pulled out of DuckDB.

GX has no DuckDB datasource that works (see STACK.md), so each batch is streamed out of the warehouse in
chunks and validated with GX's pandas datasource; per-rule counts are summed over the chunks and the rule
passes when the failing share stays within its tolerance (GX's `mostly`). Ids reach GX as 64-bit hashes
(NULL stays NULL): GX fingerprints every DataFrame it validates, and hashing strings would cost more than
the checks themselves.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from typing import Iterable

import duckdb
import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.data_context.types.base import ProgressBarsConfig

from data_checks.rules import QualityRules, parse_timestamp_sql

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
logging.getLogger("great_expectations").setLevel(logging.WARNING)

CHUNK_ROWS = 2_000_000
EPOCH = dt.datetime(1970, 1, 1)
E = gx.expectations


@dataclass(frozen=True)
class Rule:
    """One expectation, the rejection reasons it corresponds to (SQL LIKE patterns), and its tolerance."""

    name: str
    expectation: gx.expectations.Expectation
    reasons: tuple[str, ...] = ()


@dataclass
class RuleOutcome:
    name: str
    expectation: str
    column: str | None
    rows: int = 0
    failing: int = 0
    allowed_fraction: float = 0.0

    @property
    def failing_fraction(self) -> float:
        return self.failing / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        return self.failing_fraction <= self.allowed_fraction + 1e-12


@dataclass
class SuiteOutcome:
    suite: str
    rules: list[RuleOutcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failed(self) -> list[RuleOutcome]:
        return [r for r in self.rules if not r.passed]


def interaction_rules(rules: QualityRules) -> list[Rule]:
    low, high = ((t - EPOCH).total_seconds() for t in rules.timestamp_bounds())
    mostly = 1.0 - rules.max_invalid_fraction
    return [
        Rule("records_readable", E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True], mostly=mostly),
             ("unreadable record%",)),
        Rule("user_id_present", E.ExpectColumnValuesToNotBeNull(column="user_code", mostly=mostly), ("user_id: missing",)),
        Rule("item_id_present", E.ExpectColumnValuesToNotBeNull(column="item_code", mostly=mostly), ("item_id: missing",)),
        Rule("timestamp_parsable", E.ExpectColumnValuesToNotBeNull(column="ts_epoch", mostly=mostly),
             ("timestamp: missing", "timestamp: cannot parse%")),
        Rule("timestamp_in_range", E.ExpectColumnValuesToBeBetween(column="ts_epoch", min_value=low, max_value=high,
                                                                   mostly=mostly), ("timestamp: before%", "timestamp: in the future%")),
        Rule("rating_numeric", E.ExpectColumnValuesToBeInSet(column="rating_readable", value_set=[True], mostly=mostly),
             ("rating: not a number%",)),
        Rule("rating_in_range", E.ExpectColumnValuesToBeBetween(column="rating", min_value=rules.rating_min,
                                                                max_value=rules.rating_max, mostly=mostly), ("rating: outside%",)),
        Rule("item_in_catalogue", E.ExpectColumnValuesToBeInSet(column="item_known", value_set=[True], mostly=mostly),
             ("item_id: not in the catalogue%",)),
        Rule("event_key_unique", E.ExpectColumnValuesToBeInSet(column="is_duplicate", value_set=[False], mostly=mostly),
             ("duplicate event%",)),
    ]


def _hash(column: str) -> str:
    """A 64-bit hash of an id: what GX sees instead of the string."""
    return f"CAST(hash({column}) // 2 AS BIGINT)"


def _code(column: str) -> str:
    """The hash of a landed id when it is present, NULL when it is missing."""
    return f"CASE WHEN nullif(trim({column}), '') IS NOT NULL THEN {_hash(f'trim({column})')} END"


def interaction_frame_sql(rules: QualityRules) -> str:
    """One row per landed event: the valid rows as typed, and the rejected rows re-read from their landed
    text, so every row of the batch is validated (the rules can fail only on the rejected part)."""
    ts = parse_timestamp_sql("timestamp", rules.timestamp_unit)
    return f"""
    SELECT true AS readable, {_hash("user_id")} AS user_code, {_hash("item_id")} AS item_code,
           epoch(ts) AS ts_epoch, true AS rating_readable, rating, true AS item_known, false AS is_duplicate
    FROM interactions
    UNION ALL
    SELECT reason NOT LIKE 'unreadable record%', {_code("user_id")}, {_code("item_id")}, epoch({ts}),
           nullif(trim(rating), '') IS NULL OR TRY_CAST(rating AS DOUBLE) IS NOT NULL, TRY_CAST(rating AS DOUBLE),
           reason NOT LIKE 'item_id: not in the catalogue%', reason LIKE 'duplicate event%'
    FROM rejected_interactions"""


def item_rules(rules: QualityRules) -> list[Rule]:
    mostly = 1.0 - rules.max_invalid_fraction
    return [
        Rule("records_readable", E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True], mostly=mostly),
             ("unreadable record%",)),
        Rule("item_id_present", E.ExpectColumnValuesToNotBeNull(column="item_code", mostly=mostly), ("item_id: missing",)),
        Rule("item_id_unique", E.ExpectColumnValuesToBeInSet(column="is_duplicate", value_set=[False], mostly=mostly),
             ("item_id: duplicate%",)),
    ]


def item_frame_sql(valid: str = "items", rejected: str = "rejected_items") -> str:
    """One row per landed item, valid and rejected, as the item rules see it."""
    return f"""
    SELECT true AS readable, {_hash("item_id")} AS item_code, false AS is_duplicate FROM {valid}
    UNION ALL
    SELECT reason NOT LIKE 'unreadable record%', {_code("item_id")}, reason LIKE 'item_id: duplicate%' FROM {rejected}"""


def drift_rules(rules: QualityRules) -> list[Rule]:
    return [
        Rule("rejected_share", E.ExpectColumnValuesToBeBetween(column="rejected_fraction", min_value=0,
                                                               max_value=rules.warn_rejected_fraction)),
        Rule("volume_change", E.ExpectColumnValuesToBeBetween(column="volume_change", min_value=-rules.max_volume_change,
                                                              max_value=rules.max_volume_change)),
    ]


def chunks(con: duckdb.DuckDBPyConnection, sql: str, rows: int = CHUNK_ROWS) -> Iterable[pd.DataFrame]:
    """Stream a query's result as DataFrames of about `rows` rows (bounded memory at any batch size)."""
    reader = con.sql(sql).fetch_record_batch(min(rows, 1_000_000))
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size >= rows:
            yield pa.Table.from_batches(pending).to_pandas()
            pending, size = [], 0
    if pending or size == 0:
        yield pa.Table.from_batches(pending, schema=reader.schema).to_pandas()


def validate(suite: str, rules: list[Rule], frames: Iterable[pd.DataFrame]) -> SuiteOutcome:
    """Run the rules over every frame with GX and sum the counts per rule."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (context.data_sources.add_pandas(f"{suite}_source")
                        .add_dataframe_asset(f"{suite}_frames").add_batch_definition_whole_dataframe("chunk"))
    gx_suite = context.suites.add(gx.ExpectationSuite(name=suite))
    for rule in rules:  # a copy: GX ties an expectation object to the one suite it was added to
        expectation = copy.copy(rule.expectation)
        expectation.id = None
        gx_suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite}_validation", data=batch_definition, suite=gx_suite))
    outcome = SuiteOutcome(suite, [RuleOutcome(r.name, r.expectation.expectation_type, getattr(r.expectation, "column", None),
                                               allowed_fraction=1.0 - (r.expectation.mostly or 1.0)) for r in rules])
    for frame in frames:
        if frame.empty:
            continue
        result = definition.run(batch_parameters={"dataframe": frame}, result_format={"result_format": "BASIC"})
        by_key = {_key(r.expectation_config.type, r.expectation_config.kwargs.get("column")): r for r in result.results}
        for rule_outcome in outcome.rules:
            res = by_key[_key(rule_outcome.expectation, rule_outcome.column)]
            counted = res.result.get("element_count")
            rule_outcome.rows += len(frame) if counted is None else int(counted)
            rule_outcome.failing += int(res.result.get("unexpected_count") or 0)
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(f"{suite}.{rule_outcome.name}: GX failed: {res.exception_info['exception_message']}")
    return outcome


def _key(expectation_type: str, column: str | None) -> str:
    return f"{expectation_type}:{column}"
