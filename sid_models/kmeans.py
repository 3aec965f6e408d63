"""Seeded k-means (k-means++ seeding, Lloyd iterations) in torch, Euclidean or spherical (cosine).

Used to initialise codebooks (the usual cure for codebook collapse) and as the quantiser of RQ-KMeans and OPQ.
Assignment runs in row chunks, so memory stays O(chunk * k) however many items there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # [k, dim]
    assignment: torch.Tensor  # int64 [n]
    inertia: float  # sum of squared distances (Euclidean) or of 1 - cosine (spherical)
    iterations: int
    empty_refilled: int  # clusters that went empty and were moved onto the worst-served points


def assign(x: torch.Tensor, centroids: torch.Tensor, cosine: bool = False,
           chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest centroid, its distance) per row; distance is squared Euclidean or 1 - cosine."""
    if cosine:
        x, centroids = F.normalize(x, dim=1), F.normalize(centroids, dim=1)
    else:
        c_sq = (centroids * centroids).sum(1)
    index = torch.empty(len(x), dtype=torch.long, device=x.device)
    distance = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk]
        if cosine:
            best, idx = (block @ centroids.T).max(dim=1)
            dist = 1.0 - best
        else:
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; the |x|^2 term does not change the argmin.
            scores = c_sq[None, :] - 2.0 * (block @ centroids.T)
            dist, idx = scores.min(dim=1)
            dist = (dist + (block * block).sum(1)).clamp_min(0.0)
        index[start:start + chunk], distance[start:start + chunk] = idx, dist
    return index, distance


def _plus_plus(x: torch.Tensor, k: int, generator: torch.Generator, cosine: bool) -> torch.Tensor:
    """k-means++ seeding: each next centroid drawn with probability proportional to its current distance."""
    first = torch.randint(len(x), (1,), generator=generator, device="cpu").item()
    centroids = [x[first]]
    _, distance = assign(x, x[first:first + 1], cosine)
    for _ in range(1, k):
        weights = distance.clamp_min(0).double().cpu()
        if weights.sum() <= 0:  # fewer distinct points than k: draw uniformly
            weights = torch.ones_like(weights)
        pick = torch.multinomial(weights, 1, generator=generator).item()
        centroids.append(x[pick])
        _, d_new = assign(x, x[pick:pick + 1], cosine)
        distance = torch.minimum(distance, d_new)
    return torch.stack(centroids)


def kmeans(x: torch.Tensor, k: int, iterations: int = 25, seed: int = 0, cosine: bool = False,
           tol: float = 1e-4, sample: int | None = 65536) -> KMeansResult:
    """Cluster the rows of x [n, dim] into k groups. Seeding uses at most `sample` rows (drawn with the seed)
    so that k-means++ stays cheap on large inputs; Lloyd iterations use every row. An empty cluster is moved
    onto the point farthest from its centroid, so all k centroids end up in use when n >= k."""
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"kmeans needs a non-empty 2-D tensor, got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = x.float()
    generator = torch.Generator().manual_seed(seed)
    seed_rows = x
    if sample is not None and len(x) > sample:
        seed_rows = x[torch.randperm(len(x), generator=generator)[:sample].to(x.device)]
    centroids = _plus_plus(seed_rows, k, generator, cosine)
    if cosine:
        centroids = F.normalize(centroids, dim=1)
    previous, refilled, iteration = None, 0, 0
    for iteration in range(1, iterations + 1):
        index, distance = assign(x, centroids, cosine)
        sums = torch.zeros_like(centroids).index_add_(0, index, x)
        counts = torch.bincount(index, minlength=k).to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        if len(empty) and len(x) >= k:
            # Move each empty centroid onto one of the worst-served points.
            worst = distance.topk(len(empty)).indices
            centroids[empty] = x[worst]
            refilled += len(empty)
        if cosine:
            centroids = F.normalize(centroids, dim=1)
        inertia = float(distance.sum())
        if previous is not None and len(empty) == 0 and abs(previous - inertia) <= tol * max(previous, 1e-12):
            break
        previous = inertia
    index, distance = assign(x, centroids, cosine)
    return KMeansResult(centroids=centroids, assignment=index, inertia=float(distance.sum()),
                        iterations=iteration, empty_refilled=refilled)
