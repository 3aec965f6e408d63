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

from data_checks.rules import QualityRules

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


INTERACTION_FRAME_SQL = """
    SELECT parse_error IS NULL AS readable,
           CASE WHEN user_key IS NOT NULL THEN CAST(hash(user_key) // 2 AS BIGINT) END AS user_code,
           CASE WHEN item_key IS NOT NULL THEN CAST(hash(item_key) // 2 AS BIGINT) END AS item_code,
           epoch(ts) AS ts_epoch,
           nullif(trim(rating), '') IS NULL OR rating_value IS NOT NULL AS rating_readable,
           rating_value AS rating,
           (parse_error IS NOT NULL OR item_key IS NULL) OR item_known AS item_known,
           is_duplicate
    FROM staged_interactions"""


def item_rules(rules: QualityRules) -> list[Rule]:
    mostly = 1.0 - rules.max_invalid_fraction
    return [
        Rule("records_readable", E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True], mostly=mostly),
             ("unreadable record%",)),
        Rule("item_id_present", E.ExpectColumnValuesToNotBeNull(column="item_code", mostly=mostly), ("item_id: missing",)),
        Rule("item_id_unique", E.ExpectColumnValuesToBeInSet(column="is_duplicate", value_set=[False], mostly=mostly),
             ("item_id: duplicate%",)),
    ]


ITEM_FRAME_SQL = """
    SELECT parse_error IS NULL AS readable,
           CASE WHEN item_key IS NOT NULL THEN CAST(hash(item_key) // 2 AS BIGINT) END AS item_code,
           coalesce(reason LIKE 'item_id: duplicate%', false) AS is_duplicate
    FROM staged_items"""


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
