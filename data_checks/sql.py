"""DuckDB helpers shared by the data checks and the asset modules."""

from __future__ import annotations

import duckdb


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None):
    """First value of a query. Reads the whole (one-row) result: with DuckDB 2.0 a half-read result
    (`fetchone`) keeps the connection busy and the next statement fails."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None
