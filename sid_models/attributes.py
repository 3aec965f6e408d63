"""Categorical attributes as a content modality, for items that have attribute ids but no text or image
(e.g. Amazon Beauty's S3-Rec brand and category attributes)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD


def attribute_vectors(attributes: Sequence[Sequence[str]], dim: int = 64, seed: int = 0) -> tuple[np.ndarray, int]:
    """float32 [items, <= dim] and the number of distinct attributes.

    Each item is the IDF-weighted multi-hot vector of its attributes (rare attributes say more about an item
    than one every item shares), L2-normalised. With more attributes than `dim`, a truncated SVD (seeded)
    projects them to `dim` components. Items without attributes get a zero row."""
    vocabulary: dict[str, int] = {}
    rows, cols = [], []
    for row, values in enumerate(attributes):
        for value in dict.fromkeys(values):  # a repeated attribute counts once
            rows.append(row)
            cols.append(vocabulary.setdefault(value, len(vocabulary)))
    n_items, n_attrs = len(attributes), len(vocabulary)
    if n_attrs == 0:
        raise ValueError("no item has any attribute")
    multi_hot = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_items, n_attrs))
    document_frequency = np.bincount(cols, minlength=n_attrs)
    weighted = multi_hot @ sp.diags(np.log((1 + n_items) / (1 + document_frequency)).astype(np.float32) + 1)
    norms = np.sqrt(weighted.multiply(weighted).sum(axis=1)).A1
    weighted = sp.diags(1 / np.maximum(norms, 1e-12)) @ weighted
    if n_attrs <= dim:
        return weighted.toarray().astype(np.float32), n_attrs
    svd = TruncatedSVD(n_components=dim, random_state=seed, algorithm="randomized", n_iter=7)
    return svd.fit_transform(weighted).astype(np.float32), n_attrs
