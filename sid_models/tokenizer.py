"""The interface every SID tokenizer implements (ADC-SID and the baselines), so the pipeline, the benchmark and
the tests treat them alike: fit on item features, encode to codes, report reconstruction, save and load.

Features are a mapping from modality name to a float32 matrix [n_items, dim] whose rows are the same items in the
same order: content modalities by their names ("text", "visual", "attributes", ...) and the behavioral
embeddings under BEHAVIOR. A tokenizer reads the modalities its config names and ignores the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

BEHAVIOR = "behavior"

Features = Mapping[str, np.ndarray]
Progress = Callable[[dict], None]  # receives one record per epoch or iteration (plain floats and ints)


@dataclass
class FitReport:
    seconds: float
    device: str
    history: list[dict] = field(default_factory=list)  # per epoch / iteration: loss terms and counters
    # What was done against codebook collapse, e.g. {"kmeans_init": True, "standardised_inputs": True,
    # "dead_codes_reinitialised": 37}; reported in asset metadata and benchmark output.
    anti_collapse: dict = field(default_factory=dict)


class Tokenizer(ABC):
    """A fitted tokenizer maps every item to `len(token_names)` codes; position p takes values in
    [0, codebook_sizes[p])."""

    kind: ClassVar[str]  # registry name: "adc_sid", "rqvae", "rqkmeans", "opq"

    @property
    @abstractmethod
    def token_names(self) -> list[str]:
        """One short name per SID position, used in `sid_text` (e.g. ["s0", "t0", "b0", "b1", "b2"])."""

    @property
    @abstractmethod
    def codebook_sizes(self) -> list[int]:
        ...

    @abstractmethod
    def fit(self, features: Features, progress: Progress | None = None) -> FitReport:
        ...

    @abstractmethod
    def encode(self, features: Features) -> np.ndarray:
        """int64 codes [n_items, len(token_names)]; deterministic for a fitted tokenizer."""

    @abstractmethod
    def reconstruction_loss(self, features: Features) -> float:
        """Mean squared error per element between the (standardised) input the tokenizer reconstructs and its
        reconstruction from the quantised codes."""

    @property
    def behavioral_positions(self) -> list[int]:
        """SID positions quantised from behavior alone (ADC-SID's b0, b1, ...); none for the others."""
        return []

    def importance(self, features: Features) -> np.ndarray | None:
        """Per item and behavioral position, a weight >= 0 (ADC-SID's R(e_b), eq. 22); None when the tokenizer
        has no behavioral tokens."""
        return None

    @abstractmethod
    def state(self) -> dict:
        """Config and fitted parameters as tensors and plain Python values (loadable with weights_only=True)."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict) -> Tokenizer:
        ...

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"kind": self.kind, "state": self.state()}, path)


class ResidualLevels(Tokenizer, ABC):
    """Residual quantisers (RQ-VAE, RQ-KMeans): `config.levels` codebooks of `config.codebook_size`, named
    c0, c1, ... from the coarsest level."""

    config: object

    @property
    def token_names(self) -> list[str]:
        return [f"c{level}" for level in range(self.config.levels)]

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * self.config.levels


def read_checkpoint(path: Path) -> tuple[str, dict]:
    """(kind, state) of a saved tokenizer; never unpickles code."""
    stored = torch.load(Path(path), map_location="cpu", weights_only=True)
    return stored["kind"], stored["state"]


def check_features(features: Features, names: list[str]) -> int:
    """Number of items, after checking that every named modality is present, 2-D, finite and row-aligned."""
    missing = [name for name in names if name not in features]
    if missing:
        raise ValueError(f"features lack modalities {missing}; present: {sorted(features)}")
    rows = {name: np.shape(features[name])[0] for name in names}
    if len(set(rows.values())) > 1:
        raise ValueError(f"modalities have different item counts: {rows}")
    for name in names:
        matrix = np.asarray(features[name])
        if matrix.ndim != 2:
            raise ValueError(f"modality {name!r}: expected a 2-D matrix, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise ValueError(f"modality {name!r}: {int((~np.isfinite(matrix)).sum())} non-finite values")
    return next(iter(rows.values())) if rows else 0
