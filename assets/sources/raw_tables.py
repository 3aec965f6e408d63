"""The two landing tables every source writes into, and the one way rows get there."""

from __future__ import annotations

from pathlib import Path

import duckdb

from assets.resources import INTERACTION_FIELDS, ITEM_FIELDS
from data_checks.sql import scalar

FIELDS = {"interactions": INTERACTION_FIELDS, "items": ITEM_FIELDS}
RAW_TABLE = {"interactions": "raw_interactions", "items": "raw_items"}


class SourceError(ValueError):
    """An input that cannot be landed at all; the message names the file and the field."""


def create_raw_table(con: duckdb.DuckDBPyConnection, kind: str, table: str | None = None) -> str:
    """(Re)create the raw table of `kind` (or `table` in its layout): lineage columns, every field as text, and
    the parse error of records that could not be split into fields (with the record's text in `raw_line`)."""
    table = table or RAW_TABLE[kind]
    fields = ", ".join(f"{f} VARCHAR" for f in FIELDS[kind])
    con.execute(f"""CREATE OR REPLACE TABLE {table} (
                        load_batch VARCHAR NOT NULL, source_file VARCHAR NOT NULL, source_row BIGINT NOT NULL,
                        {fields}, parse_error VARCHAR, raw_line VARCHAR)""")
    return table


def insert_select(con: duckdb.DuckDBPyConnection, table: str, kind: str, load_batch: str, path: Path | str,
                  select_sql: str, params: list | None = None) -> int:
    """INSERT the rows of `select_sql` (source_row, <fields of kind>, parse_error, raw_line) into `table`."""
    columns = ", ".join(("source_row", *FIELDS[kind], "parse_error", "raw_line"))
    before = scalar(con, f"SELECT count(*) FROM {table}")
    con.execute(f"""INSERT INTO {table} (load_batch, source_file, {columns})
                    SELECT ?, ?, * FROM ({select_sql})""", [load_batch, str(path), *(params or [])])
    return scalar(con, f"SELECT count(*) FROM {table}") - before
