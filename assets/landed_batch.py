"""One landed item file, read into an in-memory DuckDB catalog (`landing`) beside the warehouse and checked with
the catalogue's own item rules, so that nothing in the warehouse changes before the batch has passed.

The file lands and is quarantined exactly like the catalogue's items (every field as text, rejected rows with a
reason), then validated with the same GX expectations (`data_checks.suites.item_rules`). Content vectors may
come with the file as list columns named `<modality>_embedding` (Parquet or JSON lines).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from assets.resources import FileSource
from assets.sources.files import check_readable, land_file
from assets.sources.raw_tables import create_raw_table
from data_checks import suites
from data_checks.rules import QualityRules, quarantine_items

CATALOG = "landing"
RAW, VALID, REJECTED = f"{CATALOG}.raw_items", f"{CATALOG}.items", f"{CATALOG}.rejected_items"
EMBEDDING_SUFFIX = "_embedding"
BATCH_FORMATS = ("csv", "tsv", "parquet", "jsonl")


@dataclass(frozen=True)
class LandedBatch:
    path: Path
    load_batch: str  # landing-<sha256 of the file's bytes>: the same bytes always get the same id
    rows: int
    valid: int
    rejected: int
    outcome: suites.SuiteOutcome


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batch_source(path: Path) -> FileSource:
    """The FileSource of a landed file; its format comes from the name and must be a tabular one."""
    source = FileSource(path=str(path))
    fmt = source.resolved_format()
    if fmt not in BATCH_FORMATS:
        raise ValueError(f"{path}: landed item files must be one of {', '.join(BATCH_FORMATS)}, not {fmt}")
    return source


def land_batch(con: duckdb.DuckDBPyConnection, path: Path, quality: QualityRules) -> LandedBatch:
    """Land, quarantine and validate `path` in the `landing` catalog of `con` (attached in memory; see
    `detach`). Raises SourceError (or ValueError) when the file cannot be read at all."""
    check_readable(path)
    source = batch_source(path)
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {CATALOG}")
    load_batch = f"landing-{file_digest(path)[:16]}"
    create_raw_table(con, "items", table=RAW)
    rows = land_file(con, source, path, "items", RAW, load_batch)
    counts = quarantine_items(con, raw=RAW, valid=VALID, rejected=REJECTED)
    outcome = suites.validate("landed_items_hard", suites.item_rules(quality),
                              suites.chunks(con, suites.item_frame_sql(VALID, REJECTED)))
    return LandedBatch(path, load_batch, rows, counts[VALID], counts[REJECTED], outcome)


def detach(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DETACH DATABASE IF EXISTS {CATALOG}")


def embedding_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Names of the `<modality>_embedding` columns of a Parquet or JSON-lines batch (none for CSV)."""
    reader = _reader(path)
    if reader is None:
        return []
    names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(path)]).fetchall()]
    return [name for name in names if name.endswith(EMBEDDING_SUFFIX)]


def read_embeddings(con: duckdb.DuckDBPyConnection, path: Path, column: str, item_ids: list[str],
                    dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [len(item_ids), dim], missing [len(item_ids)] bool) from the file's `column`: a row without a
    vector of `dim` finite numbers is missing. The first row of a repeated item_id counts, as in quarantine."""
    rows = con.execute(f"""
        WITH numbered AS (SELECT trim(CAST(item_id AS VARCHAR)) AS item_id, CAST({_quoted(column)} AS DOUBLE[])
                                 AS vector, row_number() OVER () AS file_row FROM {_reader(path)}(?))
        SELECT item_id, vector FROM numbered
        QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY file_row) = 1""", [str(path)]).fetchall()
    found = {item: vector for item, vector in rows if vector is not None and len(vector) == dim}
    vectors = np.zeros((len(item_ids), dim), dtype=np.float32)
    missing = np.ones(len(item_ids), dtype=bool)
    for row, item in enumerate(item_ids):
        vector = found.get(item)
        if vector is not None and all(v is not None for v in vector):
            values = np.asarray(vector, dtype=np.float32)
            if np.isfinite(values).all():
                vectors[row], missing[row] = values, False
    return vectors, missing


def _reader(path: Path) -> str | None:
    fmt = FileSource(path=str(path)).resolved_format()
    return {"parquet": "read_parquet", "jsonl": "read_json_auto"}.get(fmt)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
