"""Training and evaluation of the generative retriever on a leave-one-out split.

Training examples are every prefix of every train sequence (the latest `max_history` items before each train item,
which is the target). Each target's SID levels are weighted in the loss by `token_weights` (ADC-SID's importance
R(e_b) on the behavioral levels, 1 elsewhere; all ones switches the weighting off). The epoch is chosen by
Recall@10 of trie-constrained beam search on the validation items; the test items are decoded once, over the full
catalogue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sid_models.beam_search import beam_search
from sid_models.devices import autocast_dtype, resolve_device
from sid_models.metrics import metrics_from_ranks
from sid_models.retriever import RetrieverConfig, SidRetriever
from sid_models.sequences import EvalSet, LeaveOneOut, evaluation_inputs, prefix_examples
from sid_models.sid_trie import SidTrie

KS = (5, 10, 50, 100)


@dataclass
class RetrieverTrainConfig:
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    # "constant": lr throughout; "cosine": linear warm-up over `warmup_steps`, then cosine decay to lr / 10 at the
    # epoch limit (smaller late steps, for runs whose length is known in advance).
    lr_schedule: str = "constant"
    warmup_steps: int = 200
    weight_decay: float = 0.01
    patience: int = 3  # validations without a better valid Recall@10 (ties: NDCG@10)
    valid_users: int = 2000  # validation users decoded per epoch (0: all), a fixed seeded sample
    valid_beam: int = 20
    exclude_history: bool = False  # never return an item the user already has in the history
    seed: int = 0
    device: str = "auto"  # auto: CUDA when there is one
    # "bf16": the training steps autocast to bfloat16, on the GPU and on the CPU alike (weights, optimizer and
    # decoding stay fp32); "off": fp32. On AVX-512-BF16 CPUs a d_model-128 retriever's step is 1.5-1.8 times as
    # fast (benchmarks/retrieval_step.py).
    amp: str = "off"
    torch_threads: int = 0  # CPU threads (0: torch's default)

    def __post_init__(self):
        if self.amp not in ("bf16", "off"):
            raise ValueError(f"amp must be 'bf16' or 'off', got {self.amp!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.valid_beam < 10:  # the epoch is chosen by Recall@10 of the validation beam
            raise ValueError(f"valid_beam must be >= 10, got {self.valid_beam}")


def lr_factor(step: int, total_steps: int, config: RetrieverTrainConfig) -> float:
    """The learning rate's multiplier at optimizer step `step` (0-based) of `total_steps`."""
    if config.lr_schedule == "constant":
        return 1.0
    warmup = min(config.warmup_steps, total_steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class RetrievalData:
    split: LeaveOneOut  # item indices 1..n_items
    item_codes: np.ndarray  # int64 [n_items + 1, L]; row 0 (padding) all -1
    token_weights: np.ndarray  # float32 [n_items + 1, L]: loss weight of each item's SID levels
    codebook_sizes: list[int]

    def trie(self) -> SidTrie:
        """The catalogue's SIDs; trie row r is item index r + 1."""
        return SidTrie.build(self.item_codes[1:], self.codebook_sizes)


def level_weights(weights: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Loss weights from per-item SID weights [n_items + 1, L] (R(e_b) on the behavioral levels, 1 elsewhere;
    row 0 is padding): each level rescaled to mean 1 over the catalogue, so a level keeps its share of the loss
    and only the items' weights relative to each other change (raw R averages 0.04-0.10 on Amazon Beauty and
    would all but switch the behavioral levels off), then mixed with 1: floor + (1 - floor) * rescaled. With
    floor 0 an item whose R is 0 never teaches the decoder its path, and the trie still makes beams walk it."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    weights = np.asarray(weights, dtype=np.float32)
    mean = weights[1:].mean(axis=0, keepdims=True) if len(weights) > 1 else np.ones((1, weights.shape[1]))
    rescaled = np.where(mean > 0, weights / np.where(mean > 0, mean, 1.0), 0.0)
    return (floor + (1.0 - floor) * rescaled).astype(np.float32)


def retrieve(model: SidRetriever, trie: SidTrie, history_items: torch.Tensor, item_codes: torch.Tensor, beam: int,
             exclude_history: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(items [B, beam] item indices, 0 where none; scores) for left-padded history item indices [B, H]."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        step = model.decoder_step(item_codes[history_items].to(device))
        exclude = history_items - 1 if exclude_history else None  # trie rows; padding becomes -1
        rows, scores = beam_search(step, trie, len(history_items), beam, exclude, model.config.trie_softmax)
    return rows + 1, scores


def evaluate(model: SidRetriever, trie: SidTrie, data: RetrievalData, eval_set: EvalSet, rows: np.ndarray | None = None,
             beam: int = 100, ks: Sequence[int] = KS, batch_size: int = 64, exclude_history: bool = False,
             item_buckets: np.ndarray | None = None) -> dict[str, float]:
    """Recall@k and NDCG@k of the beam's ranked list for each target (a target outside the list is a miss),
    overall and per popularity bucket of the target item (`item_buckets` [n_items + 1]: 'head', 'tail', ...)."""
    model.eval()
    rows = np.arange(len(eval_set.target)) if rows is None else np.asarray(rows)
    codes = torch.from_numpy(data.item_codes)
    ranks = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        history = evaluation_inputs(eval_set.history, batch, model.config.max_history)
        items, _ = retrieve(model, trie, history, codes, beam, exclude_history)
        target = torch.from_numpy(eval_set.target[batch])[:, None]
        hit = items == target
        ranks.append(torch.where(hit.any(dim=1), hit.int().argmax(dim=1), torch.full((len(batch),), beam)))
    ranks = torch.cat(ranks)
    ks = [k for k in ks if k <= beam]
    metrics = metrics_from_ranks(ranks, ks)
    if item_buckets is not None:
        bucket = np.asarray(item_buckets)[eval_set.target[rows]]
        for name in sorted(set(bucket.tolist()) - {""}):
            chosen = torch.from_numpy(bucket == name)
            metrics.update({f"{key}_{name}": value for key, value in metrics_from_ranks(ranks[chosen], ks).items()})
    return metrics


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50):
    """Shuffled batches of example indices whose histories have similar lengths: examples are shuffled, each
    run of `window` batches is sorted by length and cut, and the batches are shuffled again. Cutting the padding
    columns of such a batch saves most of the encoder's work (short histories dominate)."""
    order = rng.permutation(len(lengths))
    chunks = [chunk[np.argsort(lengths[chunk], kind="stable")]
              for chunk in np.array_split(order, max(1, len(order) // (batch_size * window)))]
    batches = [batch for chunk in chunks for batch in np.array_split(chunk, max(1, len(chunk) // batch_size))]
    return [batches[i] for i in rng.permutation(len(batches))]


def train_step(model: SidRetriever, optimizer: torch.optim.Optimizer, trie: SidTrie, history_codes: torch.Tensor,
               target_codes: torch.Tensor, token_weights: torch.Tensor, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One optimizer step on a batch: the weighted loss (autocast to `amp_dtype` unless None; with the model's
    `trie_softmax`, each level's softmax restricted to the codes `trie` allows after the target's prefix),
    backward, gradient clipping at norm 1, update. Returns the loss."""
    allowed = ([mask.to(target_codes.device) for mask in trie.path_masks(target_codes.cpu())]
               if model.config.trie_softmax else None)
    with torch.autocast(history_codes.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = model.loss(history_codes, target_codes, token_weights, allowed)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss


def train_retriever(data: RetrievalData, model_config: RetrieverConfig, config: RetrieverTrainConfig,
                    progress: Callable[[dict], None] | None = None) -> tuple[SidRetriever, list[dict]]:
    """Train on every prefix of data.split.train; keep the weights of the best validation Recall@10."""
    torch.manual_seed(config.seed)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    amp_dtype = autocast_dtype(config.amp, device, cpu=True)
    rng = np.random.default_rng(config.seed)
    model = SidRetriever(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    histories, targets = prefix_examples(data.split.train, model_config.max_history)
    lengths = (histories > 0).sum(axis=1)
    if len(targets) == 0:
        raise ValueError("no train sequence has two items: nothing to learn from")
    steps_per_epoch = len(length_bucketed_batches(lengths, config.batch_size, np.random.default_rng(0)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.epochs * steps_per_epoch, config))
    codes = torch.from_numpy(data.item_codes)
    weights = torch.from_numpy(data.token_weights.astype(np.float32))
    trie = data.trie()
    valid = data.split.valid
    valid_rows = np.arange(len(valid.target))
    if config.valid_users and len(valid_rows) > config.valid_users:
        valid_rows = np.sort(rng.choice(valid_rows, config.valid_users, replace=False))
    best, best_state, history, waited = (-1.0, -1.0), None, [], 0
    for epoch in range(1, config.epochs + 1):
        started, model_loss, seen = time.perf_counter(), 0.0, 0
        model.train()
        for batch in length_bucketed_batches(lengths, config.batch_size, rng):
            target = torch.from_numpy(targets[batch])
            recent = histories[batch][:, model_config.max_history - int(lengths[batch].max()):]  # no all-pad column
            history_codes = codes[torch.from_numpy(recent)].to(device)
            loss = train_step(model, optimizer, trie, history_codes, codes[target].to(device),
                              weights[target].to(device), amp_dtype)
            schedule.step()
            model_loss += loss.item() * len(batch)
            seen += len(batch)
        metrics = evaluate(model, trie, data, valid, valid_rows, beam=config.valid_beam, ks=(10,),
                           exclude_history=config.exclude_history)
        record = {"epoch": epoch, "loss": model_loss / seen, "valid_recall@10": metrics["recall@10"],
                  "valid_ndcg@10": metrics["ndcg@10"], "lr": schedule.get_last_lr()[0],
                  "seconds": time.perf_counter() - started}
        history.append(record)
        if progress:
            progress(record)
        score = (metrics["recall@10"], metrics["ndcg@10"])  # NDCG breaks ties of a saturated recall
        if score > best:
            best, waited = score, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), history
