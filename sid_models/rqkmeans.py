"""RQ-KMeans (residual k-means, as in OneRec/QARM): no encoder and no gradient training; level 0 runs k-means on
the standardised item vectors, level l on what levels < l left over (x minus the sum of the chosen centroids).
The reconstruction of an item is the sum of its chosen centroids.

It is the behavior-content aligned baseline of ADC-SID's table 2, so by default it reads every modality,
behavior included. k-means++ seeding and the refill of clusters that go empty keep every code in use.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sid_models.kmeans import assign
from sid_models.quantizer_inputs import InputScaler, fitting_inputs
from sid_models.tokenizer import FitReport, Features, Progress, ResidualLevels
from sid_models.train_quantizer import seeded_kmeans


@dataclass
class RQKMeansConfig:
    modalities: tuple[str, ...] | None = None  # None: every modality, behavior included
    balance_modalities: bool = False  # equal total variance per modality (see quantizer_inputs)
    levels: int = 3
    codebook_size: int = 100
    iterations: int = 50  # Lloyd iterations per level at most (stops earlier on convergence)
    seed: int = 0
    seeding_rows: int = 65536  # rows k-means++ seeding draws from (Lloyd iterations use every row)
    device: str = "auto"  # where k-means runs during fit; encoding runs on the CPU
    torch_threads: int | None = None
    encode_batch_size: int = 65536

    def __post_init__(self):
        if self.levels < 1 or self.codebook_size < 2 or self.iterations < 1:
            raise ValueError("levels >= 1, codebook_size >= 2 and iterations >= 1 are required")
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)


def residual_codes(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [n, L], reconstruction [n, D]) of x under residual codebooks centroids [L, K, D]."""
    residual, codes = x, []
    for codebook in centroids:
        index, _ = assign(residual, codebook)
        residual = residual - codebook[index]
        codes.append(index)
    return torch.stack(codes, dim=1), x - residual


class RQKMeansTokenizer(ResidualLevels):
    kind = "rqkmeans"

    def __init__(self, config: RQKMeansConfig | None = None):
        self.config = config or RQKMeansConfig()
        self.scaler: InputScaler | None = None
        self.centroids: torch.Tensor | None = None  # float32 [levels, K, D]

    def fit(self, features: Features, progress: Progress | None = None) -> FitReport:
        started, config = time.perf_counter(), self.config
        device, self.scaler, residual = fitting_inputs(features, config, include_behavior=True)
        centroids, history, refilled = [], [], 0
        for level in range(config.levels):
            result = seeded_kmeans(residual, config.codebook_size, config.iterations, seed=config.seed + level,
                                   sample=config.seeding_rows)
            residual = residual - result.centroids[result.assignment]
            centroids.append(result.centroids)
            refilled += result.empty_refilled
            record = {"level": level, "iterations": result.iterations, "empty_refilled": result.empty_refilled,
                      # MSE per element of the reconstruction from levels <= this one.
                      "reconstruction": float((residual * residual).mean()),
                      "seconds": time.perf_counter() - started}
            history.append(record)
            if progress is not None:
                progress(record)
        self.centroids = torch.stack(centroids).cpu()
        return FitReport(seconds=time.perf_counter() - started, device=str(device), history=history,
                         anti_collapse={"kmeans_init": True, "standardised_inputs": True,
                                        "balanced_modalities": config.balance_modalities,
                                        "dead_codes_reinitialised": refilled})

    def _fitted(self) -> tuple[InputScaler, torch.Tensor]:
        if self.scaler is None or self.centroids is None:
            raise RuntimeError("the RQ-KMeans tokenizer is not fitted; call fit or from_state first")
        return self.scaler, self.centroids

    @torch.no_grad()
    def encode(self, features: Features) -> np.ndarray:
        scaler, centroids = self._fitted()
        blocks = [residual_codes(x, centroids)[0] for x in scaler.batches(features, self.config.encode_batch_size)]
        return torch.cat(blocks).numpy() if blocks else np.zeros((0, self.config.levels), dtype=np.int64)

    @torch.no_grad()
    def reconstruction_loss(self, features: Features) -> float:
        scaler, centroids = self._fitted()
        squared, count = 0.0, 0
        for x in scaler.batches(features, self.config.encode_batch_size):
            squared += float(((residual_codes(x, centroids)[1] - x) ** 2).double().sum())
            count += x.numel()
        return squared / max(count, 1)

    def state(self) -> dict:
        scaler, centroids = self._fitted()
        return {"config": asdict(self.config), "scaler": scaler.state(), "centroids": centroids}

    @classmethod
    def from_state(cls, state: dict) -> RQKMeansTokenizer:
        tokenizer = cls(RQKMeansConfig(**state["config"]))
        tokenizer.scaler = InputScaler.from_state(state["scaler"])
        tokenizer.centroids = state["centroids"].float()
        return tokenizer
