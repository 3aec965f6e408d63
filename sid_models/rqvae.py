"""RQ-VAE as TIGER uses it (Rajput et al., 2023): an MLP encoder maps the item's content vector to a latent, L
residual codebooks quantise it coarse to fine (level l picks the codeword nearest to what levels < l left over),
and an MLP decoder reconstructs the input from the sum of the chosen codewords through a straight-through
estimator. Loss: reconstruction MSE + sum over levels of |sg(r_l) - e_l|^2 + beta |r_l - sg(e_l)|^2.

Against codebook collapse (the known failure of this model): standardised inputs, k-means initialisation of each
level's codebook on the initial latents (TIGER initialises on the first batch; we use up to `kmeans_init_rows`
rows), and re-initialisation of codes no item chose during an epoch onto random residuals of that level.

Training runs on the GPU when one is present (device "auto"); the fitted tokenizer lives and encodes on the CPU
in fp32, so the SIDs of new items do not depend on the hardware of the machine that assigns them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sid_models.kmeans import assign
from sid_models.quantizer_inputs import InputScaler, fitting_inputs
from sid_models.tokenizer import FitReport, Features, Progress, ResidualLevels
from sid_models.train_quantizer import seeded_kmeans, train_minibatches


@dataclass
class RQVAEConfig:
    modalities: tuple[str, ...] | None = None  # None: every content modality (every key except BEHAVIOR)
    balance_modalities: bool = False  # equal total variance per modality (see quantizer_inputs)
    encoder_hidden: tuple[int, ...] = (512, 256, 128)  # the decoder mirrors it
    latent_dim: int = 32
    levels: int = 3
    codebook_size: int = 100
    beta: float = 0.25  # commitment weight
    kmeans_init_rows: int = 65536  # latents the initial k-means sees (a seeded sample beyond that)
    kmeans_iterations: int = 25
    reinit_every: int = 1  # epochs between dead-code re-initialisations; 0 disables them
    reinit_rows: int = 4096  # residuals that re-initialised codes are drawn from
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto": cuda if available, else cpu (training only; encoding runs on the CPU)
    max_seconds: float | None = None  # stop after the epoch that exceeds this budget
    torch_threads: int | None = None  # torch.set_num_threads when given
    encode_batch_size: int = 65536

    def __post_init__(self):
        if self.levels < 1 or self.codebook_size < 2 or self.latent_dim < 1:
            raise ValueError("levels >= 1, codebook_size >= 2 and latent_dim >= 1 are required")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
        self.encoder_hidden = tuple(int(width) for width in self.encoder_hidden)


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last), as in TIGER's encoder and decoder."""
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _lookup(codebook: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """codebook[index], differentiable in the codebook. On CUDA the backward of indexing accumulates with float
    atomics in a varying order, so seeded fits would drift apart; the one-hot product's backward is a matmul."""
    if codebook.device.type == "cpu" or not (torch.is_grad_enabled() and codebook.requires_grad):
        return codebook[index]
    return F.one_hot(index, len(codebook)).to(codebook.dtype) @ codebook


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, config: RQVAEConfig):
        super().__init__()
        self.beta = config.beta
        self.encoder = _mlp([input_dim, *config.encoder_hidden, config.latent_dim])
        self.decoder = _mlp([config.latent_dim, *reversed(config.encoder_hidden), input_dim])
        # Euclidean codebooks [levels, K, latent]; filled by `init_codebooks` before training.
        self.codebooks = nn.Parameter(torch.zeros(config.levels, config.codebook_size, config.latent_dim))
        # How often each code was chosen since the last reset (training only); not saved with the weights.
        self.register_buffer("usage", torch.zeros(config.levels, config.codebook_size, dtype=torch.long),
                             persistent=False)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes [n, L], sum of the chosen codewords (no gradient), codebook loss, commitment loss)."""
        residual, codes = z, []
        codebook_loss = commitment_loss = z.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            index, _ = assign(residual.detach(), codebook.detach())
            chosen = _lookup(codebook, index)
            codebook_loss = codebook_loss + F.mse_loss(chosen, residual.detach())  # moves codewords only
            commitment_loss = commitment_loss + F.mse_loss(residual, chosen.detach())  # moves the encoder only
            residual = residual - chosen.detach()
            codes.append(index)
            if self.training:
                self.usage[level] += torch.bincount(index, minlength=codebook.shape[0])
        return torch.stack(codes, dim=1), (z - residual).detach(), codebook_loss, commitment_loss

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        _, quantized, codebook_loss, commitment_loss = self.quantize(z)
        # Straight-through estimator: the decoder sees the quantised latent, its gradient reaches the encoder as
        # if quantisation were the identity.
        z_q = z + (quantized - z).detach()
        reconstruction = F.mse_loss(self.decoder(z_q), x)
        return {"loss": reconstruction + codebook_loss + self.beta * commitment_loss,
                "reconstruction": reconstruction, "codebook": codebook_loss, "commitment": commitment_loss}

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, iterations: int, seed: int) -> None:
        """Residual k-means on the latents of x: level l's codebook clusters what levels < l left over."""
        residual = self.encoder(x)
        for level in range(len(self.codebooks)):
            result = seeded_kmeans(residual, self.codebooks.shape[1], iterations, seed=seed + level, sample=None)
            self.codebooks.data[level] = result.centroids
            residual = residual - result.centroids[result.assignment]

    @torch.no_grad()
    def reinit_dead_codes(self, x: torch.Tensor, generator: torch.Generator) -> int:
        """Move every code unused since the last call onto a random residual of its level (computed on the rows
        of x with the codebooks as updated so far), then reset the usage counts. Returns how many moved."""
        was_training = self.training
        self.eval()  # quantize must not count usage here
        residual, moved = self.encoder(x), 0
        for level in range(len(self.codebooks)):
            dead = (self.usage[level] == 0).nonzero().flatten()[:len(residual)]
            if len(dead):
                picks = torch.randperm(len(residual), generator=generator)[:len(dead)].to(residual.device)
                self.codebooks.data[level, dead] = residual[picks]
                moved += len(dead)
            index, _ = assign(residual, self.codebooks[level])
            residual = residual - self.codebooks[level][index]
        self.usage.zero_()
        self.train(was_training)
        return moved


class RQVAETokenizer(ResidualLevels):
    kind = "rqvae"

    def __init__(self, config: RQVAEConfig | None = None):
        self.config = config or RQVAEConfig()
        self.scaler: InputScaler | None = None
        self.model: RQVAE | None = None

    def fit(self, features: Features, progress: Progress | None = None) -> FitReport:
        started, config = time.perf_counter(), self.config
        device, self.scaler, x = fitting_inputs(features, config, include_behavior=False)
        torch.manual_seed(config.seed)  # weight initialisation
        generator = torch.Generator().manual_seed(config.seed)  # samples for k-means and re-initialisation
        model = RQVAE(self.scaler.dim, config).to(device)
        init_rows = torch.randperm(len(x), generator=generator)[:config.kmeans_init_rows].to(device)
        model.init_codebooks(x[init_rows], config.kmeans_iterations, config.seed)
        dead_moved = 0

        def after_epoch(epoch: int) -> dict:
            nonlocal dead_moved
            record = {"codes_used": float((model.usage > 0).float().mean())}
            # Not after the last epoch: a moved code would then never be trained.
            if config.reinit_every and epoch % config.reinit_every == 0 and epoch < config.epochs:
                rows = torch.randperm(len(x), generator=generator)[:config.reinit_rows].to(device)
                record["dead_codes_reinitialised"] = model.reinit_dead_codes(x[rows], generator)
                dead_moved += record["dead_codes_reinitialised"]
            else:
                model.usage.zero_()
            return record

        loop = train_minibatches(model, x, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                 seed=config.seed, weight_decay=config.weight_decay, max_seconds=config.max_seconds,
                                 after_epoch=after_epoch, progress=progress)
        self.model = model.cpu().eval()
        return FitReport(seconds=time.perf_counter() - started, device=str(device), history=loop.history,
                         anti_collapse={"kmeans_init": True, "standardised_inputs": True,
                                        "balanced_modalities": config.balance_modalities,
                                        "dead_codes_reinitialised": dead_moved})

    def _fitted(self) -> tuple[InputScaler, RQVAE]:
        if self.scaler is None or self.model is None:
            raise RuntimeError("the RQ-VAE tokenizer is not fitted; call fit or from_state first")
        return self.scaler, self.model

    @torch.no_grad()
    def encode(self, features: Features) -> np.ndarray:
        scaler, model = self._fitted()
        blocks = [model.quantize(model.encoder(x))[0] for x in scaler.batches(features, self.config.encode_batch_size)]
        return torch.cat(blocks).numpy() if blocks else np.zeros((0, self.config.levels), dtype=np.int64)

    @torch.no_grad()
    def reconstruction_loss(self, features: Features) -> float:
        scaler, model = self._fitted()
        squared, count = 0.0, 0
        for x in scaler.batches(features, self.config.encode_batch_size):
            _, quantized, _, _ = model.quantize(model.encoder(x))
            squared += float(((model.decoder(quantized) - x) ** 2).double().sum())
            count += x.numel()
        return squared / max(count, 1)

    def state(self) -> dict:
        scaler, model = self._fitted()
        return {"config": asdict(self.config), "scaler": scaler.state(),
                "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict) -> RQVAETokenizer:
        tokenizer = cls(RQVAEConfig(**state["config"]))
        tokenizer.scaler = InputScaler.from_state(state["scaler"])
        tokenizer.model = RQVAE(tokenizer.scaler.dim, tokenizer.config)
        tokenizer.model.load_state_dict(state["model"])
        tokenizer.model.eval()
        return tokenizer
