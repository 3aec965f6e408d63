"""Rules for the SID tables, as SQL over DuckDB: each returns a list of problems (empty when the table holds)."""

from __future__ import annotations

import duckdb


def lookup_problems(con: duckdb.DuckDBPyConnection, table: str, version: str, catalogue_items: int,
                    tokenizer: str | None = None) -> list[str]:
    """Every catalogue item has exactly one SID of `version`, and the full SID (codes + collision token) is
    unique within the version."""
    where, params = "tokenizer_version = ?", [version]
    if tokenizer is not None:
        where, params = where + " AND tokenizer = ?", params + [tokenizer]
    rows, items, sids, texts = con.execute(f"""
        SELECT count(*), count(DISTINCT item_id), count(DISTINCT (sid, collision)), count(DISTINCT sid_text)
        FROM {table} WHERE {where}""", params).fetchall()[0]
    missing = con.execute(f"""SELECT count(*) FROM items
        WHERE item_id NOT IN (SELECT item_id FROM {table} WHERE {where})""", params).fetchall()[0][0]
    label = f"{table} {version}"
    problems = []
    if missing:
        problems.append(f"{label}: {missing} of {catalogue_items} catalogue items have no SID")
    if rows != items:
        problems.append(f"{label}: {rows - items} items have more than one SID")
    if sids != rows or texts != rows:
        problems.append(f"{label}: {rows - sids} SIDs are not unique despite the collision token")
    return problems


def importance_problems(con: duckdb.DuckDBPyConnection, version: str, catalogue_items: int,
                        behavioral_tokens: int) -> list[str]:
    """Weights finite and >= 0, one per item and behavioral token."""
    rows, bad, items = con.execute("""
        SELECT count(*), count(*) FILTER (NOT isfinite(weight) OR weight < 0), count(DISTINCT item_id)
        FROM sid_importance WHERE tokenizer_version = ?""", [version]).fetchall()[0]
    problems = []
    if bad:
        problems.append(f"sid_importance {version}: {bad} weights are not finite or negative")
    if items != catalogue_items or rows != catalogue_items * behavioral_tokens:
        problems.append(f"sid_importance {version}: {rows} rows for {items} items; expected "
                        f"{catalogue_items} items x {behavioral_tokens} behavioral tokens")
    return problems
