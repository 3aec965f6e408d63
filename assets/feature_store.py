"""Item feature matrices on disk: `<name>.npy` (float32, memory-mappable with `np.load(..., mmap_mode="r")`)
and `<name>.items.parquet` (row order: `item_id`, and `fallback`, true where the row is a stand-in rather
than the item's own vector). Rows follow the catalogue order (`items` by `item_id`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


CONTENT_MANIFEST = "content_modalities.json"  # which matrices the last content_embeddings run wrote


@dataclass(frozen=True)
class FeatureMatrix:
    item_ids: list[str]
    vectors: np.ndarray
    fallback: np.ndarray


def features_dir(home_path: Path) -> Path:
    return home_path / "artifacts" / "features"


def catalogue_item_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return con.sql("SELECT item_id FROM items ORDER BY item_id").to_arrow_table().column(0).to_pylist()


def content_hash(item_ids: Sequence[str], vectors: np.ndarray) -> str:
    digest = hashlib.sha256("\n".join(item_ids).encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def write_matrix(directory: Path, name: str, item_ids: Sequence[str], vectors: np.ndarray,
                 fallback: np.ndarray) -> dict:
    """Write atomically (temporary files, then rename) and return metadata describing the matrix."""
    if vectors.ndim != 2 or len(vectors) != len(item_ids) or len(fallback) != len(item_ids):
        raise ValueError(f"{name}: {vectors.shape} vectors, {len(fallback)} flags for {len(item_ids)} items")
    directory.mkdir(parents=True, exist_ok=True)
    matrix_path, items_path = directory / f"{name}.npy", directory / f"{name}.items.parquet"
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    np.save(_partial(matrix_path), vectors)
    pq.write_table(pa.table({"item_id": pa.array(item_ids, pa.string()), "fallback": pa.array(fallback, pa.bool_())}),
                   _partial(items_path))
    os.replace(_partial(matrix_path), matrix_path)
    os.replace(_partial(items_path), items_path)
    return {"path": str(matrix_path), "rows": len(item_ids), "dim": int(vectors.shape[1]),
            "fallback_rows": int(np.count_nonzero(fallback)), "content_hash": content_hash(item_ids, vectors)}


def read_matrix(directory: Path, name: str, mmap: bool = True) -> FeatureMatrix:
    matrix_path = directory / f"{name}.npy"
    if not matrix_path.is_file():
        raise FileNotFoundError(f"{matrix_path}: no feature matrix {name!r}; materialise the features first")
    items = pq.read_table(directory / f"{name}.items.parquet")
    vectors = np.load(matrix_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return FeatureMatrix(items.column("item_id").to_pylist(), vectors,
                         items.column("fallback").to_numpy(zero_copy_only=False))


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial" + path.suffix)


def write_manifest(directory: Path, name: str, matrices: dict[str, dict]) -> None:
    (directory / name).write_text(json.dumps(matrices, indent=2))


def read_manifest(directory: Path, name: str) -> dict[str, dict]:
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; materialise content_embeddings first")
    return json.loads(path.read_text())


def tokenizer_features(home_path: Path, item_ids: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every content modality of the last content_embeddings run plus `behavior`, as float32 matrices in the
    order of `item_ids` (the catalogue), and each matrix's content hash. Fails when a matrix was written for
    another catalogue, so a tokenizer never pairs one item's text with another's behavior."""
    directory = features_dir(home_path)
    names = [*read_manifest(directory, CONTENT_MANIFEST), "behavior"]
    features, hashes = {}, {}
    for name in names:
        matrix = read_matrix(directory, name, mmap=False)
        if list(matrix.item_ids) != list(item_ids):
            raise ValueError(f"{directory / name}.items.parquet: its items differ from the catalogue's "
                             f"({len(matrix.item_ids)} vs {len(item_ids)} rows); materialise the features again")
        features[name] = np.asarray(matrix.vectors, dtype=np.float32)
        hashes[name] = content_hash(matrix.item_ids, features[name])
    return features, hashes
