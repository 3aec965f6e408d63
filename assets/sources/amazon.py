"""Amazon reviews 2014 metadata (`meta_<Category>.json.gz`): one Python literal (not JSON) per line.

Lines are parsed with `ast.literal_eval`, which accepts literals only and never runs code. Reviews files
(`reviews_<Category>_5.json.gz`) are JSON lines and go through the generic JSON-lines path.
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from assets.sources.raw_tables import FIELDS, SourceError, insert_select

BATCH_LINES = 50_000


def format_value(value) -> str | None:
    """Text form of a metadata value: category lists become 'A > B > C' paths joined by ' | '."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, list) for v in value):
        return " | ".join(" > ".join(map(str, path)) for path in value)
    return json.dumps(value, ensure_ascii=False)


def parse_line(raw: bytes, mapping: dict[str, str], fields: tuple[str, ...]) -> tuple[list, str | None, str | None]:
    """Fields of one line, plus (parse_error, raw_line) when it cannot be read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return [None] * len(fields), f"invalid UTF-8 at byte {err.start}", raw.decode("utf-8", "backslashreplace")
    try:
        record = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        return [None] * len(fields), f"not a Python literal: {type(err).__name__}", text.rstrip("\n")
    if not isinstance(record, dict):
        return [None] * len(fields), "not a Python dict literal", text.rstrip("\n")
    return [format_value(record.get(mapping[f])) if f in mapping else None for f in fields], None, None


def _batches(path: Path, mapping: dict[str, str], fields: tuple[str, ...]) -> Iterator[pa.Table]:
    opener = gzip.open if path.name.endswith(".gz") else open
    names = ["source_row", *fields, "parse_error", "raw_line"]
    rows: list[list] = []
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                values, error, raw_line = parse_line(raw, mapping, fields)
                rows.append([number, *values, error, raw_line])
                if len(rows) == BATCH_LINES:
                    yield pa.table(list(zip(*rows)), names=names)
                    rows = []
    except (OSError, EOFError, zlib.error) as err:
        raise SourceError(f"{path}: cannot read it as gzip-compressed Amazon metadata: {err}") from err
    if rows:
        yield pa.table(list(zip(*rows)), names=names)


def land_meta(con: duckdb.DuckDBPyConnection, path: Path, mapping: dict[str, str], table: str,
              load_batch: str) -> int:
    fields = FIELDS["items"]
    landed = 0
    for batch in _batches(path, mapping, fields):
        con.register("meta_batch", batch)
        select = ", ".join(f"CAST({c} AS VARCHAR)" for c in fields)
        landed += insert_select(con, table, "items", load_batch, path,
                                f"SELECT source_row, {select}, parse_error, raw_line FROM meta_batch")
        con.unregister("meta_batch")
    return landed
