"""ADC-SID's behavior-content mixture-of-quantization network (paper section 3.2-3.4, eq. 2-14 and 22).

Every expert maps its input to one latent that one cosine codebook quantises to one SID token: shared experts
read the concatenated projections h = [h_m] of all modalities (eq. 2-5), modality-specific experts read their
modality's standardised input (eq. 6-9). The fused latent z (eq. 10) and its quantised twin z_q (eq. 11) weight
content experts by softmax gates g_m (eq. 12-13) and behavioral experts by R(e_b) (eq. 22); the decoder
reconstructs the standardised inputs from z + sg(z_q - z) (eq. 14). The module holds its own input
standardisation and behavior-norm range as buffers, so it maps raw features to codes on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sid_models.alignment import alignment_strength, load_balancing_loss, norm_normalise, total_alignment
from sid_models.tokenizer import BEHAVIOR

SHARED = "shared"  # the source of shared experts (any other source is a modality name)


@dataclass
class ADCSIDConfig:
    codebook_size: int = 100  # K, the same for every codebook
    shared_experts: int = 1  # N_s
    content_experts: int | dict[str, int] = 1  # N_m per content modality: one number for all, or by name
    behavior_experts: int = 3  # N_b
    latent_dim: int = 32
    hidden_dim: int = 256  # width of the projections D_m (eq. 2) and of the decoder
    expert_hidden: int = 128  # experts are two-layer MLPs of this width (the paper leaves them unspecified)
    gate_hidden: int = 64  # width of the gate MLPs of eq. 12-13 and 22
    content_modalities: list[str] | None = None  # None: every feature except BEHAVIOR, sorted by name
    # Switches for the paper's ablations (Table 3) and the method's parts.
    use_shared_experts: bool = True
    use_specific_experts: bool = True  # content and behavioral experts
    use_alignment: bool = True  # eq. 18-21
    adaptive_alignment: bool = True  # off: w = 1 for every item ("w/o alignment strength controller")
    use_behavior_gate: bool = True  # off: R = 1 ("w/o dynamic behavioral weighting gate")
    use_load_balancing: bool = True  # off: no eq. 23 term ("w/o sparsely-activated training strategy")
    use_content_gates: bool = True  # off: g = 1
    # Not in the paper: an anti-collapse term, log K - H(batch codeword usage) per codebook (usage_entropy_gap).
    use_usage_entropy: bool = True
    # Softness of the usage estimate on cosine similarities in [-1, 1]. It must be low for the soft usage to track
    # the argmax: on Amazon Beauty 0.1 left the soft usage near uniform while the behavioral codebooks' hard
    # entropy stayed at ~4.1 nats; 0.01 lifted them to ~4.58 (benchmarks/tokenizers.py, README).
    usage_temperature: float = 0.01
    alpha: float = 10.0  # eq. 17
    beta: float = 9.0  # eq. 17
    tau: float = 0.07  # eq. 18-20
    target_sparsity: float = 0.5  # share of zero entries of R that load balancing aims at
    lb_alpha: float = 1.2  # ReMoE's multiplicative step of the load-balancing coefficient
    # ReMoE starts at 1e-8 for runs of ~1e5 steps; a tokenizer trains ~1e3 steps, and 1e-4 reaches the useful
    # range (~1e-2, where the penalty competes with an O(1) reconstruction loss) in ~25 steps of x1.2.
    lb_init: float = 1e-4  # also lambda's floor (see update_lb_lambda)
    lb_balanced: bool = True  # ReMoE's load-weighted L1 (f_lb); False: plain L1 on R

    def __post_init__(self):
        if self.codebook_size < 1 or self.latent_dim < 1:
            raise ValueError("codebook_size and latent_dim must be >= 1")
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got {self.target_sparsity}")

    def experts_of(self, modality: str) -> int:
        if modality == BEHAVIOR:
            return self.behavior_experts if self.use_specific_experts else 0
        if not self.use_specific_experts:
            return 0
        if isinstance(self.content_experts, dict):
            return int(self.content_experts.get(modality, 1))
        return int(self.content_experts)


def resolve_content_modalities(config: ADCSIDConfig, available: list[str]) -> list[str]:
    if config.content_modalities is not None:
        return list(config.content_modalities)
    return sorted(name for name in available if name != BEHAVIOR)


def expert_tokens(config: ADCSIDConfig, content: list[str]) -> list[tuple[str, str]]:
    """(token name, source) per expert in SID order: shared, content modalities in order, then behavior.
    A content modality's prefix is its first letter when no other content modality shares it and it is not
    's' or 'b' (text -> t0), else its full name (attributes0)."""
    letters = [name[0] for name in content]
    tokens = [(f"s{i}", SHARED) for i in range(config.shared_experts if config.use_shared_experts else 0)]
    for name in content:
        unique = letters.count(name[0]) == 1 and name[0] not in ("s", "b")
        tokens += [(f"{name[0] if unique else name}{i}", name) for i in range(config.experts_of(name))]
    tokens += [(f"b{i}", BEHAVIOR) for i in range(config.experts_of(BEHAVIOR))]
    names = [token for token, _ in tokens]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"token names must be unique and non-empty, got {names}")
    return tokens


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class Standardiser(nn.Module):
    """Per-dimension z-scoring with the catalogue's mean and std, set once at fit time."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CosineCodebook(nn.Module):
    """K codewords; lookup by the largest cosine similarity (eq. 5, 7-9). Only directions matter, so lookup
    returns the unit-norm codeword."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(F.normalize(torch.randn(size, dim), dim=1))

    def unit(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)

    def forward(self, z_unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes [B], chosen unit codewords [B, D], cosine similarities [B, K])."""
        codewords = self.unit().to(z_unit.dtype)
        similarities = z_unit @ codewords.T
        codes = similarities.argmax(dim=1)
        return codes, codewords[codes], similarities


def usage_entropy_gap(similarities: torch.Tensor, temperature: float) -> torch.Tensor:
    """log K - H(p), p the batch mean of softmax(similarity / temperature) over the K codewords: zero when the
    batch spreads evenly over the codebook, log K when every item picks one codeword. Minimising it pulls idle
    codewords toward the latents and spreads latents off crowded codewords, which the hard argmax cannot."""
    usage = torch.softmax(similarities.float() / temperature, dim=1).mean(dim=0)
    return math.log(similarities.shape[1]) + (usage * usage.clamp_min(1e-12).log()).sum()


@dataclass
class ADCSIDOutput:
    target: torch.Tensor  # [B, sum of dims]: the standardised inputs e = [e_m..., e_b]
    reconstruction: torch.Tensor  # decoder(z + sg(z_q - z))
    hidden: dict[str, torch.Tensor]  # h_m per modality (eq. 2), empty when no part needs them
    latents: dict[str, torch.Tensor]  # unit-norm expert latents by token name
    quantised: dict[str, torch.Tensor]  # unit-norm chosen codewords by token name
    codes: dict[str, torch.Tensor]  # int64 [B] by token name
    similarities: dict[str, torch.Tensor]  # cosine similarity to every codeword [B, K] by token name
    gates: dict[str, torch.Tensor]  # g_m [B, N_m] per content modality
    importance: torch.Tensor  # R(e_b) [B, N_b]
    n_norm: torch.Tensor  # [B] normalised behavior norms (eq. 16)


class ADCSID(nn.Module):
    def __init__(self, config: ADCSIDConfig, input_dims: dict[str, int], content: list[str]):
        super().__init__()
        if BEHAVIOR not in input_dims:
            raise ValueError(f"ADC-SID needs the {BEHAVIOR!r} modality")
        self.config, self.content, self.input_dims = config, list(content), dict(input_dims)
        self.modalities = self.content + [BEHAVIOR]
        self.tokens = expert_tokens(config, self.content)
        hidden, latent = config.hidden_dim, config.latent_dim
        self.standardise = nn.ModuleDict({m: Standardiser(input_dims[m]) for m in self.modalities})
        self.register_buffer("norm_range", torch.tensor([0.0, 1.0]))  # N_min, N_max of eq. 15
        needs_hidden = any(source == SHARED for _, source in self.tokens) or config.use_alignment
        self.projections = nn.ModuleDict(
            {m: mlp(input_dims[m], hidden, hidden) for m in self.modalities} if needs_hidden else {})
        self.experts = nn.ModuleDict({
            name: mlp(hidden * len(self.modalities) if source == SHARED else input_dims[source],
                      config.expert_hidden, latent) for name, source in self.tokens})
        self.codebooks = nn.ModuleDict({name: CosineCodebook(config.codebook_size, latent)
                                        for name, _ in self.tokens})
        self.content_gates = nn.ModuleDict({
            m: mlp(input_dims[m], config.gate_hidden, config.experts_of(m))
            for m in self.content if config.use_content_gates and config.experts_of(m) > 0})
        n_behavior = config.experts_of(BEHAVIOR)
        self.behavior_gate = (mlp(input_dims[BEHAVIOR], config.gate_hidden, n_behavior)
                              if config.use_behavior_gate and n_behavior > 0 else None)
        if self.behavior_gate is not None:
            # A zero bias b opens each relu for about half the items at init: every expert trains, sparsity starts
            # near its target, and load balancing then shapes which items close rather than closing everything.
            nn.init.zeros_(self.behavior_gate[-1].bias)
        # The paper leaves the decoder unspecified: a two-layer MLP mirroring the projections D_m.
        self.decoder = mlp(latent, hidden, sum(input_dims[m] for m in self.modalities))

    @property
    def token_names(self) -> list[str]:
        return [name for name, _ in self.tokens]

    def prepare(self, features: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Standardised inputs per modality and N_norm of the raw behavior norms (standardising would change
        the norms, which carry the popularity signal)."""
        x = {m: self.standardise[m](features[m].float()) for m in self.modalities}
        norms = features[BEHAVIOR].float().norm(dim=1)
        return x, norm_normalise(norms, float(self.norm_range[0]), float(self.norm_range[1]))

    def behavior_importance(self, x_b: torch.Tensor, n_norm: torch.Tensor) -> torch.Tensor:
        """Eq. 22: R(e_b) = sigmoid(N_norm(e_b)) * relu(MLP(e_b) + b); ones when the gate is switched off."""
        n_behavior = self.config.experts_of(BEHAVIOR)
        if self.behavior_gate is None:
            return torch.ones(len(x_b), n_behavior, device=x_b.device)
        return torch.sigmoid(n_norm)[:, None] * F.relu(self.behavior_gate(x_b).float())

    def content_gate(self, modality: str, x_m: torch.Tensor) -> torch.Tensor:
        """Eq. 12-13: g_m = softmax(MLP_m(e_m) + b_m) over the modality's experts; ones when switched off."""
        if modality not in self.content_gates:
            return torch.ones(len(x_m), self.config.experts_of(modality), device=x_m.device)
        return torch.softmax(self.content_gates[modality](x_m).float(), dim=1)

    def unit_latents(self, x: dict[str, torch.Tensor], with_hidden: bool = True
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(h_m per modality, unit-norm latent per expert): eq. 2-4 and 6. Without `with_hidden` the projections
        run only when a shared expert needs them (encoding does not need them for alignment)."""
        shared = any(source == SHARED for _, source in self.tokens)
        hidden = {m: self.projections[m](x[m]) for m in self.projections} if with_hidden or shared else {}
        shared_input = torch.cat([hidden[m] for m in self.modalities], dim=1) if hidden else None
        latents = {name: F.normalize(self.experts[name](shared_input if source == SHARED else x[source]), dim=1)
                   for name, source in self.tokens}
        return hidden, latents

    def forward(self, features: dict[str, torch.Tensor]) -> ADCSIDOutput:
        x, n_norm = self.prepare(features)
        hidden, latents = self.unit_latents(x)
        gates = {m: self.content_gate(m, x[m]) for m in self.content if self.config.experts_of(m) > 0}
        importance = self.behavior_importance(x[BEHAVIOR], n_norm)
        codes, quantised, similarities = {}, {}, {}
        z = z_q = 0.0
        position = {m: 0 for m in self.modalities}
        for name, source in self.tokens:
            codes[name], quantised[name], similarities[name] = self.codebooks[name](latents[name])
            # Latents and codewords enter eq. 10-11 as unit vectors: the lookup is by cosine, so only directions
            # are quantised, and the weights g and R then alone set each expert's share of z.
            if source == SHARED:
                weight = 1.0
            else:
                weights = importance if source == BEHAVIOR else gates[source]
                weight = weights[:, position[source], None]
                position[source] += 1
            z = z + weight * latents[name]
            z_q = z_q + weight * quantised[name]
        reconstruction = self.decoder(z + (z_q - z).detach())  # straight-through estimator (eq. 14)
        target = torch.cat([x[m] for m in self.modalities], dim=1)
        return ADCSIDOutput(target=target, reconstruction=reconstruction, hidden=hidden, latents=latents,
                            quantised=quantised, codes=codes, similarities=similarities, gates=gates,
                            importance=importance, n_norm=n_norm)

    def loss_terms(self, out: ADCSIDOutput, lb_lambda: float) -> dict[str, torch.Tensor]:
        """Unweighted loss terms; a switched-off part contributes no entry at all."""
        config = self.config
        # VQ-VAE terms on the unit vectors, averaged over codebooks so their scale does not grow with the number
        # of experts an ablation keeps: ||sg(z) - q||^2 moves codewords, ||z - sg(q)||^2 commits latents.
        terms = {
            "reconstruction": F.mse_loss(out.reconstruction.float(), out.target.float()),
            "codebook": torch.stack([(out.latents[n].detach() - out.quantised[n]).float().pow(2).sum(1).mean()
                                     for n in out.latents]).mean(),
            "commitment": torch.stack([(out.latents[n] - out.quantised[n].detach()).float().pow(2).sum(1).mean()
                                       for n in out.latents]).mean(),
        }
        if config.use_alignment and self.content:
            w = (alignment_strength(out.n_norm, config.alpha, config.beta) if config.adaptive_alignment
                 else torch.ones_like(out.n_norm))
            terms["alignment"] = total_alignment({m: out.hidden[m] for m in self.content}, out.hidden[BEHAVIOR],
                                                 w, config.tau)
        if config.use_usage_entropy:
            terms["usage_entropy"] = torch.stack([usage_entropy_gap(out.similarities[n], config.usage_temperature)
                                                  for n in out.similarities]).mean()
        if config.use_load_balancing and self.behavior_gate is not None:
            terms["load_balance"] = load_balancing_loss(out.importance, lb_lambda, config.target_sparsity,
                                                        config.lb_balanced)
        return terms

    @torch.no_grad()
    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """int64 [B, L] codes in token order; skips the gates and the decoder, which codes do not depend on."""
        x, _ = self.prepare(features)
        _, latents = self.unit_latents(x, with_hidden=False)
        return torch.stack([self.codebooks[name](latents[name])[0] for name, _ in self.tokens], dim=1)

    @torch.no_grad()
    def importance(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x, n_norm = self.prepare(features)
        return self.behavior_importance(x[BEHAVIOR], n_norm)
