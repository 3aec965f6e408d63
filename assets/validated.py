"""Group `validated`: typed, deduplicated tables; rejected rows kept with a reason; popularity stats; splits."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.resources import SplitRules
from assets.warehouse import preview, reason_counts, table_rows
from data_checks.checks import WAREHOUSE_POOL
from data_checks.rules import QualityRules, quarantine_interactions, quarantine_items
from data_checks.sql import scalar

GROUP = "validated"


def _quarantine_results(con, counts: dict[str, int], valid: str, rejected: str, order_by: str):
    raw = next(name for name in counts if name.startswith("raw_"))
    yield dg.MaterializeResult(asset_key=valid, metadata={
        "dagster/row_count": counts[valid], "raw_rows": counts[raw], "rejected_rows": counts[rejected],
        "load_batch": scalar(con, f"SELECT any_value(load_batch) FROM {raw}") or "",
        "preview": preview(con, valid, order_by)})
    yield dg.MaterializeResult(asset_key=rejected, metadata={
        "dagster/row_count": counts[rejected], "reasons": reason_counts(con, rejected)})


@dg.multi_asset(
    specs=[dg.AssetSpec("items", deps=["raw_items"], group_name=GROUP, kinds={"duckdb"},
                        description="One row per valid item: item_id (unique), title, categories, brand, description, "
                                    "source_row."),
           dg.AssetSpec("rejected_items", deps=["raw_items"], group_name=GROUP, kinds={"duckdb"},
                        description="Landed item rows that broke a rule, as landed, with `reason`.")],
    pool=WAREHOUSE_POOL)
def validated_items(warehouse: DuckDBResource):
    with warehouse.get_connection() as con:
        counts = quarantine_items(con)
        yield from _quarantine_results(con, counts, "items", "rejected_items", "item_id")


@dg.multi_asset(
    specs=[dg.AssetSpec("interactions", deps=["raw_interactions", "items"], group_name=GROUP, kinds={"duckdb"},
                        description="Typed, deduplicated events: user_id, item_id, ts (UTC), rating (nullable), "
                                    "event_order (tie-break, nullable), source_row (lineage); stored in "
                                    "sequence order (user_id, ts, event_order, source_row)."),
           dg.AssetSpec("rejected_interactions", deps=["raw_interactions", "items"], group_name=GROUP,
                        kinds={"duckdb"}, description="Landed events that broke a rule, as landed, with `reason`.")],
    pool=WAREHOUSE_POOL)
def validated_interactions(warehouse: DuckDBResource, quality: QualityRules):
    with warehouse.get_connection() as con:
        counts = quarantine_interactions(con, quality)
        yield from _quarantine_results(con, counts, "interactions", "rejected_interactions", "user_id, ts")


@dg.asset(group_name=GROUP, deps=["interactions", "items"], pool=WAREHOUSE_POOL, kinds={"duckdb"})
def item_stats(warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Per catalogue item: interaction count over all valid interactions, popularity rank (1 = most
    popular; ties by item_id) and bucket: head = top 25% of items by rank, tail = bottom 25%, else mid."""
    with warehouse.get_connection() as con:
        con.execute("""
            CREATE OR REPLACE TABLE item_stats AS
            WITH per_item AS (
                SELECT item_id, count(*) AS interaction_count, min(ts) AS first_ts, max(ts) AS last_ts
                FROM interactions GROUP BY item_id),
            counts AS (
                SELECT i.item_id, coalesce(p.interaction_count, 0) AS interaction_count, p.first_ts, p.last_ts
                FROM items i LEFT JOIN per_item p USING (item_id)),
            ranked AS (
                SELECT *, row_number() OVER (ORDER BY interaction_count DESC, item_id) AS popularity_rank,
                       count(*) OVER () AS n FROM counts)
            SELECT item_id, interaction_count, popularity_rank,
                   CASE WHEN popularity_rank <= n * 0.25 THEN 'head'
                        WHEN popularity_rank > n * 0.75 THEN 'tail' ELSE 'mid' END AS popularity_bucket,
                   first_ts, last_ts
            FROM ranked ORDER BY popularity_rank""")
        buckets = dict(con.execute("""SELECT popularity_bucket, sum(interaction_count) FROM item_stats
                                      GROUP BY ALL""").fetchall())
        total = sum(buckets.values()) or 1
        return dg.MaterializeResult(metadata={
            "dagster/row_count": table_rows(con, "item_stats"),
            **{f"interaction_share_{b}": round(buckets.get(b, 0) / total, 4) for b in ("head", "mid", "tail")},
            "items_without_interactions": scalar(con, 
                "SELECT count(*) FROM item_stats WHERE interaction_count = 0"),
            "preview": preview(con, "item_stats", "popularity_rank")})


# `interactions` is stored in sequence order (user_id, ts, event_order, source position), so a user's
# events are consecutive row ids and the sequence position needs no sort: row id minus the user's first.
# The chronological cut avoids a global sort too: the train share ends at the boundary timestamp (the
# quantile), and only the events tied at that timestamp are ranked to place the cut exactly.
SPLITS_SQL = """
    CREATE OR REPLACE TABLE splits AS
    WITH users AS (SELECT user_id, min(rowid) AS first_pos, count(*) AS user_events FROM interactions GROUP BY user_id),
    cut AS (SELECT quantile_disc(ts, $train_fraction) AS boundary, CAST(floor(count(*) * $train_fraction) AS BIGINT) AS
                   train_events FROM interactions),
    tied AS (
        SELECT x.rowid AS pos,
               row_number() OVER (ORDER BY x.event_order NULLS LAST, x.user_id, x.source_row)
               + (SELECT count(*) FROM interactions, cut WHERE ts < boundary) <= any_value(cut.train_events) OVER ()
                   AS train
        FROM interactions x, cut WHERE x.ts = cut.boundary)
    SELECT x.user_id, x.item_id, x.ts, x.rating, x.event_order, x.rowid - u.first_pos AS seq_pos,
           CASE WHEN u.user_events < $min_events THEN 'train' WHEN x.rowid - u.first_pos = u.user_events - 1 THEN 'test'
                WHEN x.rowid - u.first_pos = u.user_events - 2 THEN 'valid' ELSE 'train' END AS loo_split,
           CASE WHEN x.ts < cut.boundary OR (x.ts = cut.boundary AND tied.train) THEN 'train' ELSE 'test' END
               AS chrono_split
    FROM interactions x JOIN users u USING (user_id) CROSS JOIN cut LEFT JOIN tied ON tied.pos = x.rowid"""


@dg.asset(group_name=GROUP, deps=["interactions"], pool=WAREHOUSE_POOL, kinds={"duckdb"})
def splits(warehouse: DuckDBResource, split_rules: SplitRules) -> dg.MaterializeResult:
    """Every valid interaction with its position in the user's sequence and two splits.
    `loo_split` (leave-one-out, sequential): a user's last event is test, the second-last valid, the rest
    train; users with fewer than `min_user_events` (3) events are train only. `chrono_split`: the earliest
    `chrono_train_fraction` (90%) of all events (by time; ties by event_order, user_id, source row) are
    train, the rest test.
    Sequence order is ts, then event_order, then the row's position in its source file."""
    with warehouse.get_connection() as con:
        con.execute(SPLITS_SQL, {"min_events": split_rules.min_user_events,
                                 "train_fraction": split_rules.chrono_train_fraction})
        parts = con.execute("""SELECT 'loo_' || loo_split AS part, count(*) FROM splits GROUP BY ALL
                               UNION ALL SELECT 'chrono_' || chrono_split, count(*) FROM splits GROUP BY ALL""").fetchall()
        return dg.MaterializeResult(metadata={
            "dagster/row_count": table_rows(con, "splits"),
            **{f"rows_{part}": count for part, count in sorted(parts)},
            "users_train_only": scalar(con, """SELECT count(DISTINCT user_id) FROM splits WHERE user_id NOT IN
                                               (SELECT user_id FROM splits WHERE loo_split = 'test')"""),
            "preview": preview(con, "splits", "user_id, seq_pos")})
