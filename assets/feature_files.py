"""Content modalities that users bring as files: precomputed vectors (e.g. image embeddings) and
categorical attributes. Rows are matched to the catalogue by item id; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq


class FeatureFileError(ValueError):
    """A feature file that cannot be used; the message names the file and the field."""


class VectorFile(dg.Config):
    """Precomputed vectors of one modality: `.npy` (float matrix) with `ids` (a text file, one item id
    per line, in row order), or Parquet with an `id_column` and either a list column `vector_column` or
    (unset) every other column as one dimension."""

    name: str
    path: str
    ids: Optional[str] = None
    id_column: str = "item_id"
    vector_column: Optional[str] = None


class AttributeFile(dg.Config):
    """Categorical attributes of items as a modality: a CSV/TSV/Parquet file with `id_column` and a
    `column` of attribute ids separated by `separator`; embedded to at most `dim` dimensions."""

    name: str = "attributes"
    path: str
    column: str
    id_column: str = "item_id"
    separator: str = " "
    dim: int = 64


def load_vectors(spec: VectorFile, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(vectors in catalogue order, fallback flags, file rows matching no catalogue item). Items the file
    lacks get the mean of the vectors present, flagged as fallback."""
    path = Path(spec.path)
    if path.suffix == ".npy":
        if not spec.ids:
            raise FeatureFileError(f"{path}: a .npy modality needs `ids` (a text file, one item id per line)")
        matrix = _numeric(np.load(path, allow_pickle=False), path, "array")
        file_ids = Path(spec.ids).read_text(encoding="utf-8").splitlines()
        if len(file_ids) != len(matrix):
            raise FeatureFileError(f"{spec.ids}: {len(file_ids)} ids for {len(matrix)} rows of {path}")
    else:
        table = pq.read_table(path)
        _require(table.column_names, [spec.id_column] + ([spec.vector_column] if spec.vector_column else []), path)
        file_ids = [str(v) for v in table.column(spec.id_column).to_pylist()]
        if spec.vector_column:
            matrix = _numeric(np.asarray(table.column(spec.vector_column).to_pylist(), dtype=object), path,
                              spec.vector_column)
        else:
            columns = [c for c in table.column_names if c != spec.id_column]
            matrix = _numeric(np.column_stack([table.column(c).to_numpy() for c in columns]), path, ",".join(columns))
    rows, extra = _rows_for(file_ids, item_ids, path, spec.id_column)
    present = rows >= 0
    if not present.any():
        raise FeatureFileError(f"{path}: no id matches a catalogue item (e.g. {file_ids[:3]})")
    vectors = np.empty((len(item_ids), matrix.shape[1]), dtype=np.float32)
    vectors[present] = matrix[rows[present]]
    vectors[~present] = vectors[present].mean(axis=0)
    return vectors, ~present, extra


def load_attributes(spec: AttributeFile, item_ids: Sequence[str]) -> tuple[list[list[str]], int]:
    """(attribute ids per catalogue item, file rows matching no catalogue item)."""
    path = Path(spec.path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        frame = pq.read_table(path).to_pandas()
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if name.endswith(".tsv") else ",")
    _require(list(frame.columns), [spec.id_column, spec.column], path)
    rows, extra = _rows_for(frame[spec.id_column].astype(str).tolist(), item_ids, path, spec.id_column)
    values = frame[spec.column].astype(str).tolist()
    return [values[r].split(spec.separator) if r >= 0 and values[r].strip() else [] for r in rows], extra


def _rows_for(file_ids: list[str], item_ids: Sequence[str], path: Path, field: str) -> tuple[np.ndarray, int]:
    position: dict[str, int] = {}
    for row, item in enumerate(file_ids):
        if position.setdefault(item, row) != row:
            raise FeatureFileError(f"{path}: {field} {item!r} appears more than once (rows {position[item]} and {row})")
    rows = np.array([position.get(item, -1) for item in item_ids], dtype=np.int64)
    return rows, len(file_ids) - int(np.count_nonzero(rows >= 0))


def _numeric(matrix: np.ndarray, path: Path, field: str) -> np.ndarray:
    try:
        matrix = np.asarray(matrix.tolist() if matrix.dtype == object else matrix, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise FeatureFileError(f"{path}: {field}: not a numeric matrix ({err})") from None
    if matrix.ndim != 2:
        raise FeatureFileError(f"{path}: {field}: expected one vector per row, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise FeatureFileError(f"{path}: {field}: {np.count_nonzero(~np.isfinite(matrix))} values are NaN or infinite")
    return matrix


def _require(columns: list[str], wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise FeatureFileError(f"{path}: missing column(s) {missing}; the file has {columns}")
