"""Training routines shared by the baseline quantizers.

- `train_minibatches`: a generic mini-batch loop for modules whose `module(batch)` returns a dict of scalar loss
  terms, of which "loss" is minimised and every term is averaged per epoch into the history. A hook after each
  epoch can act on the module (dead-code re-initialisation) and add counters to the epoch's record.
- `lloyd`: warm-started Lloyd iterations that give the same bits on every run on CUDA too. sid_models.kmeans sums
  clusters with index_add_, whose CUDA kernel adds with float atomics in a varying order, so two seeded GPU fits
  drifted apart (measured on an H100: 14% of RQ-VAE codes and 78% of OPQ codes agreed between two fits). Here the
  CUDA path sums with one-hot matrix products instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sid_models.kmeans import assign, kmeans
from sid_models.tokenizer import Progress

EpochHook = Callable[[int], dict]  # epoch number (1-based) -> extra plain values for the epoch's record


@dataclass
class LoopResult:
    history: list[dict]
    epochs: int
    steps: int
    stop_reason: str  # "epochs" or "time"
    seconds: float


def train_minibatches(module: nn.Module, data: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                      seed: int, weight_decay: float = 0.0, max_seconds: float | None = None,
                      after_epoch: EpochHook | None = None, progress: Progress | None = None) -> LoopResult:
    """Adam(W) over shuffled mini-batches of `data` (already on the module's device). The shuffle uses its own
    seeded generator, so the batches do not depend on other users of the global RNG."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history, steps, stop_reason = [], 0, "epochs"
    started = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        module.train()
        order = torch.randperm(len(data), generator=generator).to(data.device)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, len(data), batch_size):
            batch = data[order[start:start + batch_size]]
            terms = module(batch)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            steps += 1
            for name, value in terms.items():  # sums weighted by rows: the epoch mean is per item
                sums[name] = sums.get(name, 0.0) + value.detach() * len(batch)
        # One device sync per epoch rather than one per step.
        record = {"epoch": epoch, "step": steps, **{name: float(total) / len(data) for name, total in sums.items()}}
        if after_epoch is not None:
            record.update(after_epoch(epoch))
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if progress is not None:
            progress(record)
        if max_seconds is not None and record["seconds"] >= max_seconds:
            stop_reason = "time"
            break
    module.eval()
    return LoopResult(history, epoch, steps, stop_reason, time.perf_counter() - started)


def cluster_sums(x: torch.Tensor, index: torch.Tensor, k: int, one_hot: bool | None = None,
                 chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums [k, dim], counts [k]) of the rows of x per cluster. By default index_add_ on the CPU (deterministic
    there and cheaper) and elsewhere one-hot products in row chunks, which are deterministic where atomics are not."""
    if not (x.device.type != "cpu" if one_hot is None else one_hot):
        return (torch.zeros(k, x.shape[1], dtype=x.dtype).index_add_(0, index, x),
                torch.bincount(index, minlength=k).to(x.dtype))
    sums, counts = x.new_zeros(k, x.shape[1]), x.new_zeros(k)
    for start in range(0, len(x), chunk):
        members = F.one_hot(index[start:start + chunk], k).to(x.dtype)
        sums += members.T @ x[start:start + chunk]
        counts += members.sum(0)
    return sums, counts


@dataclass
class LloydResult:
    centroids: torch.Tensor  # [k, dim]
    assignment: torch.Tensor  # int64 [n], nearest of the final centroids
    iterations: int
    empty_refilled: int


def lloyd(x: torch.Tensor, centroids: torch.Tensor, iterations: int, tol: float = 1e-4) -> LloydResult:
    """Lloyd iterations from the given centroids (e.g. k-means++ seeds from sid_models.kmeans, or the previous
    codebooks of an alternating fit), stopping early when the inertia changes by less than `tol` (relative).
    A cluster that goes empty moves onto the worst-served row, as in sid_models.kmeans."""
    centroids, k = centroids.clone(), len(centroids)
    previous, refilled, iteration = None, 0, 0
    for iteration in range(1, iterations + 1):
        index, distance = assign(x, centroids)
        sums, counts = cluster_sums(x, index, k)
        empty = (counts == 0).nonzero().flatten()
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centroids)
        if len(empty) and len(x) >= k:
            centroids[empty] = x[distance.topk(len(empty)).indices]
            refilled += len(empty)
        inertia = float(distance.sum())
        if previous is not None and len(empty) == 0 and abs(previous - inertia) <= tol * max(previous, 1e-12):
            break
        previous = inertia
    return LloydResult(centroids, assign(x, centroids)[0], iteration, refilled)


def seeded_kmeans(x: torch.Tensor, k: int, iterations: int, seed: int, sample: int | None = 65536,
                  tol: float = 1e-4) -> LloydResult:
    """k-means: seeded k-means++ from sid_models.kmeans (iterations=0 returns its seeds; the seeding draws on a
    CPU generator from distances computed by matrix products, so it is reproducible on any device), then the
    deterministic Lloyd iterations above."""
    seeds = kmeans(x, k, iterations=0, seed=seed, sample=sample).centroids
    return lloyd(x, seeds, iterations, tol)
