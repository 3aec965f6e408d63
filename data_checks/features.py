"""Rules for item feature matrices: finite values, the expected shape, one row per catalogue item."""

from __future__ import annotations

from typing import Sequence

import numpy as np

CHUNK_ROWS = 65_536  # memory-mapped matrices are checked a block at a time


def matrix_problems(name: str, item_ids: Sequence[str], vectors: np.ndarray, catalogue_ids: Sequence[str],
                    expected_dim: int | None = None) -> list[str]:
    """Everything wrong with a feature matrix (empty when it is usable)."""
    problems = []
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        return [f"{name}: expected a 2-d matrix with at least one column, got shape {vectors.shape}"]
    if expected_dim is not None and vectors.shape[1] != expected_dim:
        problems.append(f"{name}: {vectors.shape[1]} columns, expected {expected_dim}")
    if len(item_ids) != len(vectors):
        problems.append(f"{name}: {len(vectors)} rows for {len(item_ids)} item ids")
    if list(item_ids) != list(catalogue_ids):
        missing = len(set(catalogue_ids) - set(item_ids))
        problems.append(f"{name}: rows do not match the catalogue ({missing} of {len(catalogue_ids)} items "
                        "without a row, or a different order); materialise the features again")
    bad = sum(int(np.count_nonzero(~np.isfinite(vectors[i:i + CHUNK_ROWS])))
              for i in range(0, len(vectors), CHUNK_ROWS))
    if bad:
        problems.append(f"{name}: {bad} values are NaN or infinite")
    return problems
