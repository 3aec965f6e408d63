"""Land the synthetic catalogue or the user's files into the raw tables."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np

from assets.resources import CatalogueSource
from assets.sources import synthetic
from assets.sources.files import land_file
from assets.sources.raw_tables import FIELDS, RAW_TABLE, SourceError, create_raw_table, insert_select

__all__ = ["RAW_TABLE", "SourceError", "land", "load_batch_id", "synthetic_params"]


def synthetic_params(source: CatalogueSource) -> synthetic.SyntheticParams:
    return synthetic.SyntheticParams(**source.synthetic.model_dump())


def load_batch_id(source: CatalogueSource, kind: str) -> str:
    """A fingerprint of what is landed: the same input always gets the same id, so reruns give identical
    tables, and any change to the file bytes, the mapping or the synthetic parameters gives a new one."""
    digest = hashlib.sha256()
    if source.kind == "synthetic":
        digest.update(json.dumps(dataclasses.asdict(synthetic_params(source)), sort_keys=True).encode())
    else:
        file_source = getattr(source, kind)
        digest.update(json.dumps(file_source.model_dump(), sort_keys=True).encode())
        with open(file_source.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"{source.kind}-{kind}-{digest.hexdigest()[:16]}"


def land(con: duckdb.DuckDBPyConnection, source: CatalogueSource, kind: str) -> tuple[str, int, str]:
    """Replace the raw table of `kind` with the source's rows; returns (table, rows, load_batch)."""
    if source.kind not in ("synthetic", "files"):
        raise SourceError(f"source kind {source.kind!r} is not one of: synthetic, files")
    if source.kind == "files" and getattr(source, kind) is None:
        raise SourceError(f"source kind 'files' needs an `{kind}` file in the config")
    batch = load_batch_id(source, kind)
    table = create_raw_table(con, kind)
    if source.kind == "synthetic":
        rows = _land_synthetic(con, synthetic_params(source), kind, table, batch)
    else:
        file_source = getattr(source, kind)
        rows = land_file(con, file_source, Path(file_source.path), kind, table, batch)
    return table, rows, batch


def _land_synthetic(con, params: synthetic.SyntheticParams, kind: str, table: str, batch: str) -> int:
    if kind == "items":
        items = synthetic.item_table(params)
        con.register("synthetic_batch", items)
        fields = ", ".join(f for f in FIELDS["items"])
        rows = insert_select(con, table, kind, batch, "synthetic",
                             f"SELECT item_index + 1, {fields}, NULL, NULL FROM synthetic_batch")
        con.unregister("synthetic_batch")
        return rows
    rows = 0
    user = f"'{synthetic.USER_ID_PREFIX}' || lpad(CAST(user_index AS VARCHAR), {synthetic.USER_ID_WIDTH}, '0')"
    item = f"'{synthetic.ITEM_ID_PREFIX}' || lpad(CAST(item_index AS VARCHAR), {synthetic.ITEM_ID_WIDTH}, '0')"
    for events in synthetic.interaction_batches(params):
        events = events.append_column("source_row", [np.arange(rows + 1, rows + 1 + events.num_rows)])
        con.register("synthetic_batch", events)
        rows += insert_select(con, table, kind, batch, "synthetic",
                              f"""SELECT source_row, {user}, {item}, CAST(timestamp AS VARCHAR),
                                         CAST(rating AS VARCHAR), NULL, NULL, NULL FROM synthetic_batch""")
        con.unregister("synthetic_batch")
    return rows

