"""Data-quality rules: the thresholds (one resource, shared by the quarantine SQL and the GX suites) and
the quarantine step that splits landed rows into valid and rejected tables, each rejection with a reason."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb

from data_checks.sql import scalar


class QualityRules(dg.ConfigurableResource):
    """Hard rules reject rows (and block the pipeline when more than `max_invalid_fraction` of a batch
    breaks one); drift rules only warn."""

    min_timestamp: str = "1990-01-01"
    max_days_ahead: int = 1  # timestamps later than load time + this many days are not sane
    rating_min: float = 1.0
    rating_max: float = 5.0
    timestamp_unit: str = "auto"  # auto | s | ms | iso
    max_invalid_fraction: float = 0.01  # ERROR above this share of a batch breaking one hard rule
    warn_rejected_fraction: float = 0.001  # WARN above this share of rejected rows
    max_volume_change: float = 0.5  # WARN when a load's rows differ by more than 50% from the previous load

    def timestamp_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        low = dt.datetime.fromisoformat(self.min_timestamp)
        high = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0, second=0, minute=0)
        return low, high + dt.timedelta(days=self.max_days_ahead)


def parse_timestamp_sql(column: str, unit: str) -> str:
    """SQL turning the landed text into a TIMESTAMP (NULL when it cannot be read). `auto` reads integers
    as unix seconds, or milliseconds when they are too large to be seconds, and anything else as ISO text."""
    number = f"TRY_CAST({column} AS DOUBLE)"
    seconds = f"TRY(to_timestamp({number})::TIMESTAMP)"
    millis = f"TRY(to_timestamp({number} / 1000)::TIMESTAMP)"
    iso = f"TRY_CAST(TRY_CAST({column} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP)"
    if unit == "s":
        return seconds
    if unit == "ms":
        return millis
    if unit == "iso":
        return iso
    if unit != "auto":
        raise ValueError(f"timestamp_unit {unit!r} is not one of auto, s, ms, iso")
    return f"CASE WHEN {number} IS NULL THEN {iso} WHEN abs({number}) >= 1e11 THEN {millis} ELSE {seconds} END"


def quarantine_items(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """raw_items -> staged_items (every row, typed, with `reason`) -> items + rejected_items."""
    con.execute("""
        CREATE OR REPLACE TABLE staged_items AS
        WITH typed AS (
            SELECT *, nullif(trim(item_id), '') AS item_key FROM raw_items),
        ruled AS (
            SELECT *, CASE WHEN parse_error IS NOT NULL THEN 'unreadable record: ' || parse_error
                           WHEN item_key IS NULL THEN 'item_id: missing' END AS first_reason
            FROM typed)
        SELECT * EXCLUDE (first_reason),
               coalesce(first_reason, CASE WHEN row_number() OVER (PARTITION BY item_key, first_reason IS NULL
                                                ORDER BY source_file, source_row) > 1
                                           THEN 'item_id: duplicate of an earlier row' END) AS reason
        FROM ruled""")
    con.execute("""CREATE OR REPLACE TABLE items AS
                   SELECT item_key AS item_id, title, categories, brand, description, load_batch, source_file, source_row
                   FROM staged_items WHERE reason IS NULL ORDER BY item_id""")
    con.execute("""CREATE OR REPLACE TABLE rejected_items AS
                   SELECT load_batch, source_file, source_row, item_id, title, categories, brand, description,
                          raw_line, reason
                   FROM staged_items WHERE reason IS NOT NULL ORDER BY source_file, source_row""")
    return _counts(con, "raw_items", "items", "rejected_items")


def quarantine_interactions(con: duckdb.DuckDBPyConnection, rules: QualityRules) -> dict[str, int]:
    """raw_interactions -> staged_interactions (every row, typed, with `reason`) -> interactions +
    rejected_interactions. Rules apply in order; a row's reason is the first rule it breaks."""
    low, high = rules.timestamp_bounds()
    ts = parse_timestamp_sql("timestamp", rules.timestamp_unit)
    con.execute(f"""
        CREATE OR REPLACE TABLE staged_interactions AS
        WITH typed AS (
            SELECT r.*, nullif(trim(r.user_id), '') AS user_key, nullif(trim(r.item_id), '') AS item_key,
                   {ts} AS ts, TRY_CAST(r.rating AS DOUBLE) AS rating_value,
                   TRY_CAST(r.event_order AS BIGINT) AS event_order_value
            FROM raw_interactions r),
        ruled AS (
            SELECT t.*, i.item_id IS NOT NULL AS item_known,
                CASE WHEN t.parse_error IS NOT NULL THEN 'unreadable record: ' || t.parse_error
                     WHEN t.user_key IS NULL THEN 'user_id: missing'
                     WHEN t.item_key IS NULL THEN 'item_id: missing'
                     WHEN nullif(trim(t.timestamp), '') IS NULL THEN 'timestamp: missing'
                     WHEN t.ts IS NULL THEN 'timestamp: cannot parse ' || t.timestamp
                     WHEN t.ts < $low THEN 'timestamp: before ' || $low::DATE
                     WHEN t.ts > $high THEN 'timestamp: in the future'
                     WHEN nullif(trim(t.rating), '') IS NOT NULL AND t.rating_value IS NULL
                          THEN 'rating: not a number: ' || t.rating
                     WHEN t.rating_value < $rmin OR t.rating_value > $rmax
                          THEN 'rating: outside ' || $rmin || ' .. ' || $rmax
                     WHEN nullif(trim(t.event_order), '') IS NOT NULL AND t.event_order_value IS NULL
                          THEN 'event_order: not an integer: ' || t.event_order
                     WHEN i.item_id IS NULL THEN 'item_id: not in the catalogue (items)'
                END AS first_reason
            FROM typed t LEFT JOIN items i ON i.item_id = t.item_key),
        -- Duplicates are rare: find the repeated keys with a hash aggregate, and rank rows (a sort) only there.
        repeated AS (
            SELECT user_key, item_key, ts FROM ruled WHERE first_reason IS NULL GROUP BY ALL HAVING count(*) > 1),
        marked AS (
            SELECT ruled.*, repeated.ts IS NOT NULL AS in_repeated_group FROM ruled
            LEFT JOIN repeated USING (user_key, item_key, ts)),
        ranked AS (
            SELECT * EXCLUDE (in_repeated_group), false AS is_duplicate FROM marked
            WHERE NOT in_repeated_group OR first_reason IS NOT NULL
            UNION ALL
            SELECT * EXCLUDE (in_repeated_group),
                   row_number() OVER (PARTITION BY user_key, item_key, ts ORDER BY source_file, source_row) > 1
            FROM marked WHERE in_repeated_group AND first_reason IS NULL)
        SELECT * EXCLUDE (first_reason),
               coalesce(first_reason, CASE WHEN is_duplicate THEN 'duplicate event (user_id, item_id, timestamp)' END)
                   AS reason
        FROM ranked""", {"low": low, "high": high, "rmin": rules.rating_min, "rmax": rules.rating_max})
    con.execute("""CREATE OR REPLACE TABLE interactions AS
                   SELECT user_key AS user_id, item_key AS item_id, ts, rating_value AS rating,
                          event_order_value AS event_order, load_batch, source_file, source_row
                   FROM staged_interactions WHERE reason IS NULL
                   ORDER BY user_id, ts, event_order NULLS LAST, source_file, source_row""")
    con.execute("""CREATE OR REPLACE TABLE rejected_interactions AS
                   SELECT load_batch, source_file, source_row, user_id, item_id, timestamp, rating, event_order,
                          raw_line, reason
                   FROM staged_interactions WHERE reason IS NOT NULL ORDER BY source_file, source_row""")
    return _counts(con, "raw_interactions", "interactions", "rejected_interactions")


def _counts(con: duckdb.DuckDBPyConnection, raw: str, valid: str, rejected: str) -> dict[str, int]:
    counts = {name: scalar(con, f"SELECT count(*) FROM {name}") for name in (raw, valid, rejected)}
    if counts[raw] != counts[valid] + counts[rejected]:  # conservation: nothing dropped silently
        raise RuntimeError(f"row counts not conserved: {counts}")
    return counts
