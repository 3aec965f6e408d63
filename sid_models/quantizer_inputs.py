"""The input of the baseline quantizers (RQ-VAE, RQ-KMeans, OPQ): the chosen modalities, each standardised per
dimension, concatenated in a fixed order.

Why standardise: modalities arrive on unrelated scales (unit-norm sentence vectors, SASRec vectors whose norm grows
with popularity, attribute embeddings), and without it the largest-scale modality decides every code, which is
one road to codebook collapse. After standardisation every input dimension has mean 0 and variance 1 on the
fitting set, so predicting the mean scores a reconstruction MSE of 1.0: the yardstick of `reconstruction_loss`.

`balance_modalities` additionally scales each modality's block so that every modality carries the same total
variance (a 384-d text block would otherwise outweigh a 64-d behavior block six to one). The weights keep the mean
variance per element at 1.0, so the yardstick is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sid_models.devices import resolve_device
from sid_models.tokenizer import BEHAVIOR, Features, check_features

MIN_STD = 1e-6  # a dimension with a smaller std is constant: it is centred but not scaled


def resolve_modalities(features: Features, configured: Sequence[str] | None, include_behavior: bool) -> list[str]:
    """The configured modalities, or by default every modality present (sorted, so the column order does not
    depend on the mapping's order), with or without BEHAVIOR."""
    if configured:
        return list(configured)
    names = sorted(name for name in features if include_behavior or name != BEHAVIOR)
    if not names:
        wanted = "modality" if include_behavior else "content modality (every key except 'behavior')"
        raise ValueError(f"features hold no {wanted}; present: {sorted(features)}")
    return names


@dataclass
class InputScaler:
    names: list[str]  # modalities in column order
    dims: list[int]
    mean: torch.Tensor  # float32 [D]
    scale: torch.Tensor  # float32 [D]: 1 / std, times the modality weight when balanced

    @classmethod
    def fit(cls, features: Features, names: Sequence[str], balance_modalities: bool = False,
            chunk: int = 65536) -> InputScaler:
        n = check_features(features, list(names))
        if n < 2:
            raise ValueError(f"standardisation needs at least 2 items, got {n}")
        dims = [int(np.shape(features[name])[1]) for name in names]
        total = sum(dims)
        means, scales = [], []
        for name, dim in zip(names, dims):
            mean, std = _column_moments(np.asarray(features[name]), chunk)
            weight = np.sqrt(total / (len(names) * dim)) if balance_modalities else 1.0
            means.append(mean)
            scales.append(np.where(std < MIN_STD, 1.0, 1.0 / np.maximum(std, MIN_STD)) * weight)
        return cls(list(names), dims, torch.from_numpy(np.concatenate(means)).float(),
                   torch.from_numpy(np.concatenate(scales)).float())

    @property
    def dim(self) -> int:
        return sum(self.dims)

    def check(self, features: Features) -> int:
        """Number of items, after checking presence, alignment, finiteness and the fitted widths."""
        n = check_features(features, self.names)
        for name, dim in zip(self.names, self.dims):
            if np.shape(features[name])[1] != dim:
                raise ValueError(f"modality {name!r} has {np.shape(features[name])[1]} columns; "
                                 f"the tokenizer was fitted on {dim}")
        return n

    def transform(self, features: Features, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """float32 [rows, D] of rows start:stop (all rows by default), standardised; call `check` first."""
        blocks = [np.asarray(features[name][start:stop], dtype=np.float32) for name in self.names]
        x = torch.from_numpy(np.concatenate(blocks, axis=1))
        return (x - self.mean) * self.scale

    def batches(self, features: Features, batch_size: int) -> Iterator[torch.Tensor]:
        """Standardised row blocks, so that encoding a large catalogue needs memory for one block only."""
        n = self.check(features)
        for start in range(0, n, batch_size):
            yield self.transform(features, start, start + batch_size)

    def state(self) -> dict:
        return {"names": list(self.names), "dims": list(self.dims), "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict) -> InputScaler:
        return cls(list(state["names"]), [int(d) for d in state["dims"]], state["mean"].float(),
                   state["scale"].float())


def _column_moments(matrix: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and population std in float64, two passes over row chunks (no float64 copy of the
    whole matrix, and no cancellation from E[x^2] - E[x]^2)."""
    n = len(matrix)
    total = np.zeros(matrix.shape[1])
    for start in range(0, n, chunk):
        total += matrix[start:start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(matrix.shape[1])
    for start in range(0, n, chunk):
        squares += ((matrix[start:start + chunk] - mean) ** 2).sum(axis=0)
    return mean, np.sqrt(squares / n)


def fitting_inputs(features: Features, config, include_behavior: bool
                   ) -> tuple[torch.device, InputScaler, torch.Tensor]:
    """The start every baseline fit shares: torch threads, the training device, and the standardised input
    matrix (of the modalities `config.modalities` names, or the default set) on that device."""
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    names = resolve_modalities(features, config.modalities, include_behavior=include_behavior)
    scaler = InputScaler.fit(features, names, config.balance_modalities)
    return device, scaler, scaler.transform(features).to(device)
