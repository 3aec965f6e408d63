"""Quantization metrics of a SID table (ADC-SID section 4.1.2 plus collision statistics), the collision token that
makes every SID unique, and the SID text form used in `sid_lookup.sid_text`.

Codes are an int matrix [n_items, L]: row i is item i's SID before the collision token, column p takes values in
[0, codebook_sizes[p]). Everything is vectorised (np.bincount, one lexsort), so a million rows take well under a
second except `sid_strings`, which has to build one Python string per item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COLLISION_TOKEN = "d"  # name of the final, disambiguating position in sid_text


def _check_codes(codes: np.ndarray, codebook_sizes: Sequence[int] | None = None) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes must be a 2-D matrix [n_items, L] with L >= 1, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    if codebook_sizes is not None:
        if len(codebook_sizes) != codes.shape[1]:
            raise ValueError(f"{codes.shape[1]} code positions but {len(codebook_sizes)} codebook sizes")
        if len(codes) and ((codes < 0).any() or (codes >= np.asarray(codebook_sizes)).any()):
            raise ValueError(f"codes outside [0, codebook_size) for codebook sizes {list(codebook_sizes)}")
    return codes


def _packed_key(codes: np.ndarray) -> np.ndarray | None:
    """The SID as one int64 (mixed radix, position 0 most significant) when it fits, else None: sorting one
    int64 column is several times faster than a lexsort over L columns."""
    if codes.min() < 0:
        return None
    radix = codes.max(axis=0).astype(np.int64) + 1
    if float(np.prod(radix.astype(np.float64))) >= 2.0 ** 62:
        return None
    key = np.zeros(len(codes), dtype=np.int64)
    for position in range(codes.shape[1]):
        key = key * radix[position] + codes[:, position]
    return key


def _group_rows(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, group_of_sorted_row, group_start): `order` sorts the rows by SID and, lexsort being stable, keeps
    row order inside each group of identical SIDs; group ids run 0.. over the sorted rows."""
    key = _packed_key(codes)
    if key is not None:
        order = np.argsort(key, kind="stable")
        new_group = np.ones(len(codes), dtype=bool)
        new_group[1:] = key[order][1:] != key[order][:-1]
    else:
        order = np.lexsort(codes.T[::-1])  # lexsort's last key is the primary one: position 0 first
        ordered = codes[order]
        new_group = np.ones(len(codes), dtype=bool)
        new_group[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.cumsum(new_group) - 1
    return order, group, np.flatnonzero(new_group)


def quantization_metrics(codes: np.ndarray, codebook_sizes: Sequence[int]) -> dict:
    """Token-distribution entropy, codebook utilisation and collisions of a SID table.

    - entropy_per_codebook: Shannon entropy (nats) of each position's empirical token distribution over the
      items; ln K for a uniform code, 0 for a constant one. `entropy` is the mean over positions.
    - utilization_per_codebook: fraction of a position's K codes that at least one item uses; `utilization` is
      the mean over positions.
    - collision_rate: fraction of items whose full SID (all L positions, before any collision token) is shared
      with at least one other item. Two items on one SID count as two colliding items, so a table whose
      items all share one SID has rate 1.0 and a collision-free table 0.0.
    - unique_sids: number of distinct SIDs; max_collision_group: most items on one SID (1 when collision-free).
    """
    codes = _check_codes(codes, codebook_sizes)
    n = len(codes)
    entropies, utilizations = [], []
    for position, size in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, position], minlength=size)
        p = counts[counts > 0] / max(n, 1)
        entropies.append(float(-(p * np.log(p)).sum()))
        utilizations.append(float((counts > 0).sum() / size))
    if n:
        _, group, _ = _group_rows(codes)
        group_sizes = np.bincount(group)
        colliding = int(group_sizes[group_sizes > 1].sum())
        unique, largest = len(group_sizes), int(group_sizes.max())
    else:
        colliding = unique = largest = 0
    return {
        "n_items": n,
        "entropy_per_codebook": entropies,
        "entropy": float(np.mean(entropies)),
        "utilization_per_codebook": utilizations,
        "utilization": float(np.mean(utilizations)),
        "collision_rate": colliding / n if n else 0.0,
        "unique_sids": unique,
        "max_collision_group": largest,
    }


def collision_tokens(codes: np.ndarray) -> np.ndarray:
    """int64 [n]: within each group of identical SIDs 0, 1, 2, ... in row order, so that (SID, token) is unique.
    Pass the rows in a deterministic order (e.g. sorted item_id) so that the tokens are reproducible."""
    codes = _check_codes(codes)
    tokens = np.zeros(len(codes), dtype=np.int64)
    if len(codes):
        order, group, start = _group_rows(codes)
        # Rank inside the group = position in sorted order minus the position where the group starts.
        tokens[order] = np.arange(len(codes)) - start[group]
    return tokens


def sid_strings(codes: np.ndarray, token_names: Sequence[str], collision: np.ndarray | None) -> list[str]:
    """One string per item, e.g. `<s0_12><t0_3><b0_45><d_0>`; the collision part is left out when None."""
    codes = _check_codes(codes)
    if len(token_names) != codes.shape[1]:
        raise ValueError(f"{codes.shape[1]} code positions but {len(token_names)} token names")
    parts = [(name, codes[:, p]) for p, name in enumerate(token_names)]
    if collision is not None:
        collision = np.asarray(collision)
        if collision.shape != (len(codes),):
            raise ValueError(f"collision must have shape ({len(codes)},), got {collision.shape}")
        parts.append((COLLISION_TOKEN, collision))
    text = np.full(len(codes), "", dtype=object)
    for name, column in parts:
        if len(column) == 0:
            continue
        if column.min() < 0:
            raise ValueError(f"negative code in position {name!r}")
        # One string per distinct code value, then object-array concatenation: no per-item formatting.
        table = np.array([f"<{name}_{value}>" for value in range(int(column.max()) + 1)], dtype=object)
        text = text + table[column]
    return text.tolist()
