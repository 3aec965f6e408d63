"""Small helpers the asset modules share for DuckDB tables: metadata previews and the load history."""

from __future__ import annotations

import dagster as dg
import duckdb

from data_checks.sql import scalar

PREVIEW_ROWS = 5


def markdown_table(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> dg.MetadataValue:
    frame = con.execute(sql, params or []).df()
    if frame.empty:
        return dg.MetadataValue.md("_no rows_")
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def preview(con: duckdb.DuckDBPyConnection, table: str, order_by: str) -> dg.MetadataValue:
    return markdown_table(con, f"SELECT * FROM {table} ORDER BY {order_by} LIMIT {PREVIEW_ROWS}")


def reason_counts(con: duckdb.DuckDBPyConnection, rejected_table: str) -> dg.MetadataValue:
    # Reasons that quote the offending value are grouped by their rule (the text before the value).
    return markdown_table(con, f"""SELECT regexp_replace(reason, ':\\s.*$', '') AS rule, count(*) AS rows,
                                          any_value(reason) AS example FROM {rejected_table}
                                   GROUP BY ALL ORDER BY rows DESC, rule""")


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return scalar(con, f"SELECT count(*) FROM {table}")


def record_load(con: duckdb.DuckDBPyConnection, table: str, load_batch: str, rows: int) -> None:
    """Append to load_history, which the volume-change drift rule compares against."""
    con.execute("""CREATE TABLE IF NOT EXISTS load_history (
                       table_name VARCHAR, load_batch VARCHAR, rows BIGINT, loaded_at TIMESTAMP)""")
    con.execute("INSERT INTO load_history VALUES (?, ?, ?, now()::TIMESTAMP)", [table, load_batch, rows])


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:80]
