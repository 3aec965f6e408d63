"""Training loop of ADC-SID and its `Tokenizer` face (kind "adc_sid"): fit on item features, encode to SIDs,
report importance weights R(e_b) and reconstruction, save and load.

Against codebook collapse it standardises every modality, initialises each cosine codebook with spherical
k-means on the initial latents, re-seeds codewords left unused over an epoch from latents of that epoch, and
(unless switched off) adds the usage-entropy term of `adc_sid.usage_entropy_gap`, which spreads each batch
evenly over every codebook.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from sid_models.adc_sid import ADCSID, ADCSIDConfig, expert_tokens, resolve_content_modalities
from sid_models.alignment import activation_sparsity, update_lb_lambda
from sid_models.devices import autocast_dtype, resolve_device
from sid_models.kmeans import kmeans
from sid_models.tokenizer import BEHAVIOR, Features, FitReport, Progress, Tokenizer, check_features


@dataclass
class ADCSIDTrainConfig:
    epochs: int = 60
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    amp: str = "bf16"  # autocast dtype on CUDA: "bf16", "fp16" or "off"; the CPU trains and every encode runs fp32
    # Weights of the loss terms (the load-balancing term carries its own adaptive coefficient lambda).
    reconstruction_weight: float = 1.0
    codebook_weight: float = 1.0
    commitment_weight: float = 0.25  # VQ-VAE's beta
    # InfoNCE over a batch of ~1000 starts near log(B) ~ 7, several times the reconstruction loss; 0.1 keeps the
    # alignment from dominating the quantiser (the paper gives no weight).
    alignment_weight: float = 0.1
    usage_entropy_weight: float = 1.0
    kmeans_init: bool = True
    kmeans_iterations: int = 25
    kmeans_sample: int = 65536  # items whose initial latents k-means sees (all when fewer)
    dead_code_every: int = 1  # epochs between re-seeding unused codewords; 0 never
    standardise: bool = True  # per-dimension z-scoring of each modality
    max_seconds: float | None = None  # stop after the epoch that exceeds this budget
    torch_threads: int | None = None  # torch.set_num_threads during fit when given
    encode_batch_size: int = 8192


@contextmanager
def _exact_fp32():
    """Full-precision fp32 matmuls (no TF32), so a checkpoint gives the same codes on CPU and GPU."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextmanager
def _threads(count: int | None):
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def set_input_statistics(model: ADCSID, data: dict[str, torch.Tensor], standardise: bool) -> None:
    """Per-dimension mean/std of each modality (identity when not standardising) and N_min/N_max (eq. 15)."""
    for m in model.modalities:
        if standardise:
            values = data[m].double()
            std = values.std(dim=0, unbiased=False)
            model.standardise[m].mean.copy_(values.mean(dim=0).float())
            model.standardise[m].std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)).float())
    norms = data[BEHAVIOR].double().norm(dim=1)
    model.norm_range.copy_(torch.stack([norms.min(), norms.max()]).float())


@torch.no_grad()
def kmeans_initialise(model: ADCSID, data: dict[str, torch.Tensor], config: ADCSIDTrainConfig) -> None:
    """Every codebook becomes the spherical k-means centroids of its expert's initial latents."""
    was_training = model.training
    model.eval()
    n = len(data[BEHAVIOR])
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))[:config.kmeans_sample]
    rows = rows.sort().values.to(data[BEHAVIOR].device)
    latents = defaultdict(list)
    for chunk in rows.split(config.encode_batch_size):
        x, _ = model.prepare({m: data[m][chunk] for m in model.modalities})
        for name, z in model.unit_latents(x, with_hidden=False)[1].items():
            latents[name].append(z)
    for index, name in enumerate(model.token_names):
        result = kmeans(torch.cat(latents[name]), model.config.codebook_size, config.kmeans_iterations,
                        seed=config.seed + index, cosine=True)
        model.codebooks[name].weight.copy_(result.centroids)
    model.train(was_training)


@torch.no_grad()
def reseed_dead_codes(model: ADCSID, usage: dict[str, torch.Tensor], latents: dict[str, torch.Tensor],
                      generator: torch.Generator) -> int:
    """Codewords no item chose during the epoch move onto random latents of the epoch's last batch, where they
    are certain to be chosen again; returns how many moved."""
    moved = 0
    for name, counts in usage.items():
        dead = (counts == 0).nonzero().flatten()
        if len(dead) == 0:
            continue
        pool = latents[name].float()
        pick = torch.randperm(len(pool), generator=generator)[:len(dead)]
        if len(pick) < len(dead):  # fewer latents than dead codewords: draw with replacement
            pick = torch.randint(len(pool), (len(dead),), generator=generator)
        model.codebooks[name].weight[dead] = pool[pick.to(pool.device)]
        moved += len(dead)
    return moved


def train_adc_sid(model: ADCSID, data: dict[str, torch.Tensor], config: ADCSIDTrainConfig,
                  progress: Progress | None = None) -> tuple[list[dict], int, float]:
    """Mini-batch training over items; returns (history, dead codes re-seeded, final load-balancing lambda)."""
    device = data[BEHAVIOR].device
    amp_dtype = autocast_dtype(config.amp, device)
    weights = {"reconstruction": config.reconstruction_weight, "codebook": config.codebook_weight,
               "commitment": config.commitment_weight, "alignment": config.alignment_weight,
               "usage_entropy": config.usage_entropy_weight, "load_balance": 1.0}
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    generator = torch.Generator().manual_seed(config.seed)
    n, size = len(data[BEHAVIOR]), model.config.codebook_size
    n_batches = max(-(-n // config.batch_size), 1)
    lam, history, moved_total, started = model.config.lb_init, [], 0, time.perf_counter()
    balancing = model.config.use_load_balancing and model.behavior_gate is not None
    for epoch in range(1, config.epochs + 1):
        model.train()
        sums = defaultdict(lambda: torch.zeros((), device=device))
        usage = {name: torch.zeros(size, dtype=torch.long, device=device) for name in model.token_names}
        zeros = entries = 0.0
        # Near-equal batches (no runt last batch): in-batch negatives need company.
        for rows in torch.randperm(n, generator=generator).tensor_split(n_batches):
            rows = rows.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model({m: data[m][rows] for m in model.modalities})
                terms = model.loss_terms(out, lam)
            loss = sum(weights[name] * value for name, value in terms.items())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if model.behavior_gate is not None:
                sparsity = activation_sparsity(out.importance)
                zeros, entries = zeros + sparsity * out.importance.numel(), entries + out.importance.numel()
                if balancing:
                    lam = update_lb_lambda(lam, sparsity, model.config.target_sparsity, model.config.lb_alpha,
                                           floor=model.config.lb_init)
            for name, value in [("loss", loss), *terms.items()]:
                sums[name] += value.detach().float() * len(rows)
            for name, codes in out.codes.items():
                usage[name] += torch.bincount(codes, minlength=size)
        record = {"epoch": epoch, **{name: float(total) / n for name, total in sums.items()},
                  **{f"utilisation_{name}": float((counts > 0).float().mean()) for name, counts in usage.items()},
                  "lb_lambda": lam, "sparsity": zeros / entries if entries else 0.0}
        out_of_time = config.max_seconds is not None and time.perf_counter() - started >= config.max_seconds
        last = out_of_time or epoch == config.epochs
        # Not after the last epoch: the codebooks that encode must be the trained ones.
        moved = (reseed_dead_codes(model, usage, out.latents, generator)
                 if config.dead_code_every and epoch % config.dead_code_every == 0 and not last else 0)
        moved_total += moved
        record.update(dead_codes_reseeded=moved, seconds=time.perf_counter() - started)
        history.append(record)
        if progress is not None:
            progress(record)
        if last:
            break
    model.eval()
    return history, moved_total, lam


class ADCSIDTokenizer(Tokenizer):
    kind = "adc_sid"

    def __init__(self, config: ADCSIDConfig | None = None, train: ADCSIDTrainConfig | None = None):
        self.config = config or ADCSIDConfig()
        self.train_config = train or ADCSIDTrainConfig()
        self.model: ADCSID | None = None
        self.lb_lambda = self.config.lb_init

    @property
    def token_names(self) -> list[str]:
        if self.model is not None:
            return self.model.token_names
        if self.config.content_modalities is None:
            raise RuntimeError("token names depend on the content modalities: fit first or name them in the config")
        return [name for name, _ in expert_tokens(self.config, self.config.content_modalities)]

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.config.codebook_size] * len(self.token_names)

    @property
    def behavioral_positions(self) -> list[int]:
        # expert_tokens lists the shared and content experts first and the behavioral experts last
        behavioral = self.config.experts_of(BEHAVIOR)
        return list(range(len(self.token_names) - behavioral, len(self.token_names)))

    def fit(self, features: Features, progress: Progress | None = None) -> FitReport:
        started = time.perf_counter()
        content = resolve_content_modalities(self.config, list(features))
        modalities = content + [BEHAVIOR]
        if check_features(features, modalities) < 2:
            raise ValueError("ADC-SID needs at least 2 items (its contrastive terms use in-batch negatives)")
        config = self.train_config
        device = resolve_device(config.device)
        with _threads(config.torch_threads):
            torch.manual_seed(config.seed)
            data = {m: torch.as_tensor(np.asarray(features[m], dtype=np.float32)) for m in modalities}
            # Built on the CPU, so a seed gives the same initial weights whatever the device.
            model = ADCSID(self.config, {m: data[m].shape[1] for m in modalities}, content)
            set_input_statistics(model, data, config.standardise)
            model, data = model.to(device), {m: tensor.to(device) for m, tensor in data.items()}
            if config.kmeans_init:
                kmeans_initialise(model, data, config)
            history, moved, self.lb_lambda = train_adc_sid(model, data, config, progress)
        # Like the baselines, the fitted tokenizer encodes on the CPU: SIDs then depend on the checkpoint alone,
        # never on the device that trained it (`to` moves it for GPU encoding).
        self.model = model.cpu()
        anti_collapse = {"kmeans_init": config.kmeans_init, "standardised_inputs": config.standardise,
                         "cosine_codebooks": True, "dead_code_every": config.dead_code_every,
                         "dead_codes_reinitialised": moved,
                         "usage_entropy_weight": config.usage_entropy_weight if self.config.use_usage_entropy else 0.0}
        return FitReport(seconds=time.perf_counter() - started, device=str(device), history=history,
                         anti_collapse=anti_collapse)

    def _fitted(self) -> ADCSID:
        if self.model is None:
            raise RuntimeError("the tokenizer is not fitted")
        return self.model

    @torch.no_grad()
    def _batched(self, features: Features, apply) -> list[torch.Tensor]:
        """apply(model, batch) over row chunks of the features, in eval mode and exact fp32."""
        model = self._fitted()
        model.eval()
        check_features(features, model.modalities)
        device = model.norm_range.device
        tensors = {m: torch.as_tensor(np.asarray(features[m], dtype=np.float32)) for m in model.modalities}
        n, step = len(tensors[BEHAVIOR]), self.train_config.encode_batch_size
        outputs = []
        with _exact_fp32():
            for start in range(0, n, step):
                batch = {m: t[start:start + step].to(device) for m, t in tensors.items()}
                outputs.append(apply(model, batch).cpu())
        return outputs

    def encode(self, features: Features) -> np.ndarray:
        parts = self._batched(features, lambda model, batch: model.encode(batch))
        width = len(self.token_names)
        return torch.cat(parts).numpy().astype(np.int64) if parts else np.zeros((0, width), dtype=np.int64)

    def importance(self, features: Features) -> np.ndarray | None:
        if self.config.experts_of(BEHAVIOR) == 0:
            return None
        parts = self._batched(features, lambda model, batch: model.importance(batch))
        return torch.cat(parts).numpy().astype(np.float32) if parts else np.zeros((0, 0), dtype=np.float32)

    def reconstruction_loss(self, features: Features) -> float:
        def squared_error(model: ADCSID, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            out = model(batch)
            return torch.stack([(out.reconstruction - out.target).pow(2).sum().double(),
                                torch.tensor(out.target.numel(), dtype=torch.float64, device=out.target.device)])
        totals = torch.stack(self._batched(features, squared_error)).sum(dim=0)
        return float(totals[0] / totals[1])

    def to(self, device: str | torch.device) -> ADCSIDTokenizer:
        """Move the fitted model (encoding then runs there)."""
        self._fitted().to(torch.device(device))
        return self

    def state(self) -> dict:
        model = self._fitted()
        return {"config": asdict(self.config), "train_config": asdict(self.train_config),
                "content": list(model.content), "input_dims": dict(model.input_dims),
                "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
                "lb_lambda": float(self.lb_lambda)}

    @classmethod
    def from_state(cls, state: dict, device: str | torch.device = "cpu") -> ADCSIDTokenizer:
        tokenizer = cls(ADCSIDConfig(**state["config"]), ADCSIDTrainConfig(**state["train_config"]))
        model = ADCSID(tokenizer.config, state["input_dims"], state["content"])
        model.load_state_dict(state["model"])
        tokenizer.model = model.to(torch.device(device)).eval()
        tokenizer.lb_lambda = state["lb_lambda"]
        return tokenizer
