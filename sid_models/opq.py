"""Optimized product quantization (Ge et al., 2013, non-parametric variant), as RPG uses it for its SIDs: rotate
the item vector with an orthogonal R, cut the rotated vector into M equal sub-vectors, and quantise each with its
own k-means codebook. One token per subspace; the tokens are parallel (unordered), not coarse to fine.

Fit alternates two exact minimisations of the distortion |R x - y|^2 (y: the concatenated sub-codewords):
  1. R fixed: k-means per subspace on the rotated data (warm-started from the previous codebooks);
  2. codes fixed: R = V U^T from the SVD X^T Y = U S V^T (orthogonal Procrustes).
R starts as a seeded random rotation, which spreads variance over the subspaces (with the identity, a 384-d text
block would fill the first three of four subspaces and the 64-d attributes the last one alone).
Reconstruction: x_hat = R^T y (rows: y @ R), mapped back through the optional PCA.

Input width: the standardised modalities are concatenated (D columns), optionally projected on their top
`pca_dim` principal components, and then padded with zero columns up to a multiple of M. Zero columns carry no
variance; the reconstruction drops them again, so padding never adds reconstruction error.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sid_models.kmeans import assign
from sid_models.quantizer_inputs import InputScaler, fitting_inputs
from sid_models.tokenizer import FitReport, Features, Progress, Tokenizer
from sid_models.train_quantizer import lloyd, seeded_kmeans


@dataclass
class OPQConfig:
    modalities: tuple[str, ...] | None = None  # None: every content modality (every key except BEHAVIOR)
    balance_modalities: bool = False  # equal total variance per modality (see quantizer_inputs)
    pca_dim: int | None = None  # project on this many principal components first; None keeps all D
    subspaces: int = 4  # M: tokens per item
    codebook_size: int = 100
    opq_iterations: int = 10  # alternations of codebook and rotation updates
    kmeans_iterations: int = 10  # Lloyd iterations per subspace in each alternation
    seed: int = 0
    seeding_rows: int = 65536  # rows the initial k-means++ seeding draws from
    device: str = "auto"  # where fit runs; encoding runs on the CPU
    torch_threads: int | None = None
    encode_batch_size: int = 65536

    def __post_init__(self):
        if self.subspaces < 1 or self.codebook_size < 2 or self.opq_iterations < 1 or self.kmeans_iterations < 1:
            raise ValueError("subspaces >= 1, codebook_size >= 2, opq_iterations >= 1, kmeans_iterations >= 1")
        if self.pca_dim is not None and self.pca_dim < 1:
            raise ValueError(f"pca_dim must be None or >= 1, got {self.pca_dim}")
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)


def random_rotation(width: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal folded into Q."""
    gaussian = torch.randn(width, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float()


def procrustes_rotation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The orthogonal R minimising |x R^T - y|_F: with x^T y = U S V^T, R^T = U V^T (SVD in float64)."""
    u, _, vh = torch.linalg.svd((x.T @ y).double())
    return (u @ vh).T.float()


class OPQTokenizer(Tokenizer):
    kind = "opq"

    def __init__(self, config: OPQConfig | None = None):
        self.config = config or OPQConfig()
        self.scaler: InputScaler | None = None
        self.components: torch.Tensor | None = None  # [D, pca_dim] or None
        self.rotation: torch.Tensor | None = None  # R [W, W]: rotated = padded @ R.T
        self.centroids: torch.Tensor | None = None  # [M, K, W / M]

    @property
    def token_names(self) -> list[str]:
        return [f"p{m}" for m in range(self.config.subspaces)]

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.subspaces

    # The three maps between the standardised input (D) and the rotated space (W = M * sub-width).
    def _to_padded(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.components if self.components is not None else x
        return torch.nn.functional.pad(z, (0, self.rotation.shape[0] - z.shape[1]))

    def _from_rotated(self, y: torch.Tensor, input_width: int) -> torch.Tensor:
        z = (y @ self.rotation)[:, :input_width if self.components is None else self.components.shape[1]]
        return z @ self.components.T if self.components is not None else z

    def _codes(self, rotated: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes [n, M], concatenated sub-codewords [n, W])."""
        width = centroids.shape[2]
        codes = [assign(rotated[:, m * width:(m + 1) * width], centroids[m])[0] for m in range(len(centroids))]
        codes = torch.stack(codes, dim=1)
        return codes, torch.cat([centroids[m][codes[:, m]] for m in range(len(centroids))], dim=1)

    def fit(self, features: Features, progress: Progress | None = None) -> FitReport:
        started, config = time.perf_counter(), self.config
        device, self.scaler, x = fitting_inputs(features, config, include_behavior=False)
        self.components = _principal_components(x, config.pca_dim) if config.pca_dim else None
        kept = x.shape[1] if self.components is None else self.components.shape[1]
        width = math.ceil(kept / config.subspaces) * config.subspaces
        self.rotation = random_rotation(width, config.seed).to(device)
        padded = self._to_padded(x)
        centroids, history, refilled = None, [], 0
        for iteration in range(1, config.opq_iterations + 1):
            rotated = padded @ self.rotation.T
            centroids, moved = self._update_codebooks(rotated, centroids)
            refilled += moved
            codes, y = self._codes(rotated, centroids)
            record = {"iteration": iteration, "empty_refilled": moved,
                      "reconstruction": float(((self._from_rotated(y, x.shape[1]) - x) ** 2).mean()),
                      "seconds": time.perf_counter() - started}
            history.append(record)
            if progress is not None:
                progress(record)
            if iteration < config.opq_iterations:  # the last codebooks must match the rotation that is kept
                self.rotation = procrustes_rotation(padded, y)
        self.rotation, self.centroids = self.rotation.cpu(), centroids.cpu()
        self.components = self.components.cpu() if self.components is not None else None
        return FitReport(seconds=time.perf_counter() - started, device=str(device), history=history,
                         anti_collapse={"kmeans_init": True, "standardised_inputs": True,
                                        "balanced_modalities": config.balance_modalities,
                                        "dead_codes_reinitialised": refilled, "input_width": x.shape[1],
                                        "rotated_width": width})

    def _update_codebooks(self, rotated: torch.Tensor, centroids: torch.Tensor | None) -> tuple[torch.Tensor, int]:
        """k-means per subspace: seeded k-means++ the first time, warm-started Lloyd afterwards (so each
        alternation cannot undo the previous one's progress)."""
        config, width = self.config, rotated.shape[1] // self.config.subspaces
        updated, refilled = [], 0
        for m in range(config.subspaces):
            sub = rotated[:, m * width:(m + 1) * width]
            if centroids is None:
                result = seeded_kmeans(sub, config.codebook_size, config.kmeans_iterations, seed=config.seed + m,
                                       sample=config.seeding_rows)
            else:
                result = lloyd(sub, centroids[m], config.kmeans_iterations)
            updated.append(result.centroids)
            refilled += result.empty_refilled
        return torch.stack(updated), refilled

    def _fitted(self) -> InputScaler:
        if self.scaler is None or self.rotation is None or self.centroids is None:
            raise RuntimeError("the OPQ tokenizer is not fitted; call fit or from_state first")
        return self.scaler

    @torch.no_grad()
    def encode(self, features: Features) -> np.ndarray:
        scaler = self._fitted()
        blocks = [self._codes(self._to_padded(x) @ self.rotation.T, self.centroids)[0]
                  for x in scaler.batches(features, self.config.encode_batch_size)]
        return torch.cat(blocks).numpy() if blocks else np.zeros((0, self.config.subspaces), dtype=np.int64)

    @torch.no_grad()
    def reconstruction_loss(self, features: Features) -> float:
        scaler = self._fitted()
        squared, count = 0.0, 0
        for x in scaler.batches(features, self.config.encode_batch_size):
            _, y = self._codes(self._to_padded(x) @ self.rotation.T, self.centroids)
            squared += float(((self._from_rotated(y, x.shape[1]) - x) ** 2).double().sum())
            count += x.numel()
        return squared / max(count, 1)

    def state(self) -> dict:
        scaler = self._fitted()
        return {"config": asdict(self.config), "scaler": scaler.state(), "components": self.components,
                "rotation": self.rotation, "centroids": self.centroids}

    @classmethod
    def from_state(cls, state: dict) -> OPQTokenizer:
        tokenizer = cls(OPQConfig(**state["config"]))
        tokenizer.scaler = InputScaler.from_state(state["scaler"])
        tokenizer.components = state["components"]
        tokenizer.rotation, tokenizer.centroids = state["rotation"].float(), state["centroids"].float()
        return tokenizer


def _principal_components(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[D, dim]: eigenvectors of the covariance of the standardised (zero-mean) input, largest first."""
    if dim > x.shape[1]:
        raise ValueError(f"pca_dim={dim} exceeds the input width {x.shape[1]}")
    covariance = (x.T.double() @ x.double()) / len(x)
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    return vectors[:, -dim:].flip(1).float()
