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


# `interactions` is written in this order; the splits rely on it (a user's events are consecutive rows).
SEQUENCE_ORDER = "user_id, ts, event_order NULLS LAST, source_row"

# Quarantine runs in two passes so that no wide intermediate table is written: the first pass keeps only
# the row ids of the rejected rows (usually few) with their reasons; the second writes the valid table
# (an anti-join on those ids) and the rejected table (a join) straight from the raw table. A raw table
# holds one load, so the valid tables keep `source_row` as lineage and the load's `load_batch` goes to
# the asset metadata rather than onto every row.

def quarantine_items(con: duckdb.DuckDBPyConnection, raw: str = "raw_items", valid: str = "items",
                     rejected: str = "rejected_items") -> dict[str, int]:
    """raw_items -> items + rejected_items (or other tables of the same layout, e.g. a landed batch's temporary
    ones). A repeated item_id keeps its first row (by source position)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW typed_items AS
        SELECT rowid AS raw_rowid, *, nullif(trim(item_id), '') AS item_key FROM {raw}""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE item_rejections AS
        WITH ruled AS (
            SELECT raw_rowid, item_key, source_file, source_row,
                   CASE WHEN parse_error IS NOT NULL THEN 'unreadable record: ' || parse_error
                        WHEN item_key IS NULL THEN 'item_id: missing' END AS first_reason
            FROM typed_items),
        reasoned AS (
            SELECT raw_rowid,
                   coalesce(first_reason, CASE WHEN row_number() OVER (PARTITION BY item_key, first_reason IS NULL
                                                    ORDER BY source_file, source_row) > 1
                                               THEN 'item_id: duplicate of an earlier row' END) AS reason
            FROM ruled)
        SELECT * FROM reasoned WHERE reason IS NOT NULL""")
    con.execute(f"""CREATE OR REPLACE TABLE {valid} AS
                   SELECT item_key AS item_id, title, categories, brand, description, source_row
                   FROM typed_items WHERE raw_rowid NOT IN (SELECT raw_rowid FROM item_rejections)
                   ORDER BY item_id""")
    _write_rejected(con, raw, "item_rejections", rejected, ("item_id", "title", "categories", "brand", "description"))
    return _counts(con, raw, valid, rejected)


def quarantine_interactions(con: duckdb.DuckDBPyConnection, rules: QualityRules) -> dict[str, int]:
    """raw_interactions -> interactions + rejected_interactions. Rules apply in order; a row's reason is
    the first rule it breaks. Of the rows that pass, a repeated (user, item, timestamp) keeps its first row."""
    low, high = rules.timestamp_bounds()
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW typed_interactions AS
        SELECT rowid AS raw_rowid, *, nullif(trim(user_id), '') AS user_key, nullif(trim(item_id), '') AS item_key,
               {parse_timestamp_sql("timestamp", rules.timestamp_unit)} AS ts,
               TRY_CAST(rating AS DOUBLE) AS rating_value, TRY_CAST(event_order AS BIGINT) AS event_order_value
        FROM raw_interactions""")
    # Duplicates are rare: candidate keys come from a hash aggregate over 64-bit key hashes, and only the
    # candidates are ranked (a sort) on their exact keys.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE interaction_rejections AS
        WITH checked AS MATERIALIZED (
            SELECT raw_rowid, hash(user_key, item_key, ts) AS event_key,
                CASE WHEN parse_error IS NOT NULL THEN 'unreadable record: ' || parse_error
                     WHEN user_key IS NULL THEN 'user_id: missing'
                     WHEN item_key IS NULL THEN 'item_id: missing'
                     WHEN nullif(trim(timestamp), '') IS NULL THEN 'timestamp: missing'
                     WHEN ts IS NULL THEN 'timestamp: cannot parse ' || timestamp
                     WHEN ts < $low THEN 'timestamp: before ' || $low::DATE
                     WHEN ts > $high THEN 'timestamp: in the future'
                     WHEN nullif(trim(rating), '') IS NOT NULL AND rating_value IS NULL
                          THEN 'rating: not a number: ' || rating
                     WHEN rating_value < $rmin OR rating_value > $rmax
                          THEN 'rating: outside ' || $rmin || ' .. ' || $rmax
                     WHEN nullif(trim(event_order), '') IS NOT NULL AND event_order_value IS NULL
                          THEN 'event_order: not an integer: ' || event_order
                     WHEN item_key NOT IN (SELECT item_id FROM items) THEN 'item_id: not in the catalogue (items)'
                END AS reason
            FROM typed_interactions),
        repeated AS (
            SELECT event_key FROM checked WHERE reason IS NULL GROUP BY event_key HAVING count(*) > 1),
        candidates AS (
            SELECT raw_rowid, user_key, item_key, ts, source_file, source_row FROM typed_interactions
            WHERE raw_rowid IN (SELECT raw_rowid FROM checked
                                WHERE reason IS NULL AND event_key IN (SELECT event_key FROM repeated))),
        duplicates AS (
            SELECT raw_rowid, 'duplicate event (user_id, item_id, timestamp)' AS reason FROM (
                SELECT raw_rowid, row_number() OVER (PARTITION BY user_key, item_key, ts
                                                     ORDER BY source_file, source_row) AS nth
                FROM candidates)
            WHERE nth > 1)
        SELECT raw_rowid, reason FROM checked WHERE reason IS NOT NULL
        UNION ALL
        SELECT raw_rowid, reason FROM duplicates""",
                {"low": low, "high": high, "rmin": rules.rating_min, "rmax": rules.rating_max})
    con.execute(f"""CREATE OR REPLACE TABLE interactions AS
                   SELECT user_key AS user_id, item_key AS item_id, ts, rating_value AS rating,
                          event_order_value AS event_order, source_row
                   FROM typed_interactions WHERE raw_rowid NOT IN (SELECT raw_rowid FROM interaction_rejections)
                   ORDER BY {SEQUENCE_ORDER}""")
    _write_rejected(con, "raw_interactions", "interaction_rejections", "rejected_interactions",
                    ("user_id", "item_id", "timestamp", "rating", "event_order"))
    return _counts(con, "raw_interactions", "interactions", "rejected_interactions")


def _write_rejected(con: duckdb.DuckDBPyConnection, raw: str, rejections: str, rejected: str,
                    fields: tuple[str, ...]) -> None:
    """The rejected rows exactly as landed, with their reason."""
    con.execute(f"""CREATE OR REPLACE TABLE {rejected} AS
                    SELECT r.load_batch, r.source_file, r.source_row, {", ".join("r." + f for f in fields)},
                           r.raw_line, x.reason
                    FROM {raw} r JOIN {rejections} x ON r.rowid = x.raw_rowid
                    ORDER BY r.source_file, r.source_row""")


def _counts(con: duckdb.DuckDBPyConnection, raw: str, valid: str, rejected: str) -> dict[str, int]:
    counts = {name: scalar(con, f"SELECT count(*) FROM {name}") for name in (raw, valid, rejected)}
    if counts[raw] != counts[valid] + counts[rejected]:  # conservation: nothing dropped silently
        raise RuntimeError(f"row counts not conserved: {counts}")
    return counts
