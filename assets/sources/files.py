"""Landing user files (CSV/TSV, Parquet, JSON lines, Amazon 2014 reviews/meta; gzip too) into raw tables.

Every field lands as text, exactly as it arrived, so that a wrong type or a bad value becomes a rejected row
with a reason in the validation step instead of a failed load. Records DuckDB cannot split into fields
(wrong column count, bytes that are not UTF-8, malformed JSON) land too, with `parse_error` and `raw_line`,
so raw row counts always equal what the file holds.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from assets.resources import FileSource, REQUIRED_FIELDS
from assets.sources import amazon
from assets.sources.raw_tables import FIELDS, SourceError, insert_select
from data_checks.sql import scalar

# Column names the Amazon 2014 files use; a `columns` mapping in the config still wins.
PRESET_COLUMNS = {
    "amazon_reviews": {"user_id": "reviewerID", "item_id": "asin", "timestamp": "unixReviewTime", "rating": "overall"},
    "amazon_meta": {"item_id": "asin", "title": "title", "categories": "categories", "brand": "brand",
                    "description": "description"},
}


def land_file(con: duckdb.DuckDBPyConnection, source: FileSource, path: Path, kind: str, table: str,
              load_batch: str) -> int:
    """Append the rows of one file to `table` (raw_interactions or raw_items); returns rows landed."""
    check_readable(path)
    fmt = source.resolved_format()
    try:
        if fmt in ("csv", "tsv"):
            rows = _land_csv(con, source, path, kind, table, load_batch, delimiter="\t" if fmt == "tsv" else source.delimiter)
        elif fmt == "parquet":
            rows = _land_parquet(con, source, path, kind, table, load_batch)
        elif fmt == "amazon_meta":
            rows = amazon.land_meta(con, path, _mapping(source, kind, fmt, available=None, path=path), table, load_batch)
        else:  # jsonl and amazon_reviews
            rows = _land_jsonl(con, source, path, kind, table, load_batch, fmt)
    except duckdb.Error as err:
        raise SourceError(f"{path}: cannot read it as {fmt}: {_first_line(err)}") from err
    if rows == 0:
        raise SourceError(f"{path}: the file holds no data rows (only a header or blank lines)")
    return rows


def check_readable(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes)")


def _mapping(source: FileSource, kind: str, fmt: str, available: list[str] | None, path: Path) -> dict[str, str]:
    """sidflow field -> file column. Explicit `columns` entries must exist; other fields are taken when the
    file has a column of the same name (or the preset's name). Required fields must resolve."""
    for field in source.columns:
        if field not in FIELDS[kind]:
            raise SourceError(f"{path}: `columns` names unknown field {field!r}; {kind} fields are "
                              f"{', '.join(FIELDS[kind])}")
    preset = PRESET_COLUMNS.get(fmt, {})
    mapping: dict[str, str] = {}
    for field in FIELDS[kind]:
        column = source.columns.get(field) or preset.get(field) or field
        explicit = field in source.columns
        if available is None or column in available:
            mapping[field] = column
        elif explicit or field in REQUIRED_FIELDS[kind]:
            listed = ", ".join(available) if available else "none"
            raise SourceError(f"{path}: field {field!r} needs column {column!r}, which the file does not have "
                              f"(columns: {listed}); set `columns: {{{field}: <column>}}` in the config")
    return mapping


def _select_fields(kind: str, mapping: dict[str, str], expr) -> str:
    return ", ".join(f"{expr(mapping[f]) if f in mapping else 'NULL'} AS {f}" for f in FIELDS[kind])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _land_csv(con, source, path, kind, table, load_batch, delimiter) -> int:
    options = "header=true, all_varchar=true, strict_mode=true"
    params: list = [str(path)]
    if delimiter:
        options += ", delim=?"
        params.append(delimiter)
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {options}, ignore_errors=true)",
                                         params).fetchall()]
    mapping = _mapping(source, kind, "csv", columns, path)
    con.execute("DROP TABLE IF EXISTS landing_rejects; DROP TABLE IF EXISTS landing_scans")
    con.execute(f"""CREATE TEMP TABLE landing_good AS SELECT {_select_fields(kind, mapping, _quote)}, ordinality AS ord
                    FROM read_csv(?, {options}, store_rejects=true, rejects_table='landing_rejects',
                                  rejects_scan='landing_scans') WITH ORDINALITY""", params)
    # Rejected records carry their file line; a good row's line is its ordinal shifted by the rejected
    # records before it (header = line 1, one record per line).
    con.execute("""CREATE TEMP TABLE landing_bad AS
                   SELECT line, line - 1 - row_number() OVER (ORDER BY line) AS good_before,
                          error_type || coalesce(' in ' || column_name, '') || ': ' || error_message AS parse_error,
                          csv_line FROM (SELECT DISTINCT ON (line) * FROM landing_rejects ORDER BY line)""")
    shift = ("(SELECT count(*) FROM landing_bad b WHERE b.good_before <= g.ord - 1)"
             if scalar(con, "SELECT count(*) FROM landing_bad") else "0")
    insert_select(con, table, kind, load_batch, path,
                  f"SELECT g.ord + 1 + {shift} AS source_row, {', '.join('g.' + f for f in FIELDS[kind])}, "
                  "NULL AS parse_error, NULL AS raw_line FROM landing_good g")
    insert_select(con, table, kind, load_batch, path,
                  f"SELECT line, {', '.join('NULL' for _ in FIELDS[kind])}, parse_error, csv_line FROM landing_bad")
    rows = scalar(con, "SELECT (SELECT count(*) FROM landing_good) + (SELECT count(*) FROM landing_bad)")
    con.execute("DROP TABLE landing_good; DROP TABLE landing_bad; DROP TABLE IF EXISTS landing_rejects; "
                "DROP TABLE IF EXISTS landing_scans")
    return rows


def _land_parquet(con, source, path, kind, table, load_batch) -> int:
    columns = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
    mapping = _mapping(source, kind, "parquet", columns, path)
    select = _select_fields(kind, mapping, lambda c: f"CAST({_quote(c)} AS VARCHAR)")
    return insert_select(con, table, kind, load_batch, path,
                         f"SELECT ordinality, {select}, NULL, NULL FROM read_parquet(?) WITH ORDINALITY", [str(path)])


# json_type fails on text that is not JSON, so it must only see lines json_valid accepted (AND does not
# short-circuit in SQL; CASE does).
JSON_OBJECT = "CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END"


def _land_jsonl(con, source, path, kind, table, load_batch, fmt) -> int:
    # Lines are read as plain text so that a malformed line lands with its reason instead of stopping the load.
    lines = ("SELECT ordinality AS source_row, line FROM read_csv(?, columns={'line': 'VARCHAR'}, header=false, "
             "delim=chr(1), quote='', escape='', strict_mode=false) WITH ORDINALITY WHERE trim(line) <> ''")
    keys = [r[0] for r in con.execute(
        f"SELECT DISTINCT unnest(json_keys(line)) FROM ({lines}) WHERE {JSON_OBJECT}", [str(path)]).fetchall()]
    mapping = _mapping(source, kind, fmt, sorted(keys), path)

    def extract(key: str) -> str:
        # Nested values (lists, objects) keep their JSON text; scalars become plain strings.
        return f"CASE WHEN ok THEN json_extract_string(line, '$.' || {_sql_string(_quote(key))}) END"

    select = _select_fields(kind, mapping, extract)
    return insert_select(con, table, kind, load_batch, path,
                         f"""SELECT source_row, {select},
                                    CASE WHEN NOT ok THEN 'malformed JSON line' END, CASE WHEN NOT ok THEN line END
                             FROM (SELECT *, {JSON_OBJECT} AS ok
                                   FROM ({lines}))""", [str(path)])


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
