"""Training and scoring of the PPNet ranker: binary cross-entropy on labelled (user, item) rows, early stopping on
the AUC of a validation slice of the training rows, the best epoch's weights kept.

The test rows never reach training or model selection; `evaluate` scores them once, at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sid_models.devices import resolve_device
from sid_models.ranking import PPNetRanker, RankerConfig
from sid_models.ranking_data import ItemFeatures, RankingRows
from sid_models.ranking_metrics import auc, ranking_metrics

BUCKETS = ("head", "mid", "tail")


@dataclass
class RankerTrainConfig:
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0  # Adam's L2 on every parameter
    patience: int = 2  # epochs without a better validation AUC before stopping
    seed: int = 0
    device: str = "auto"  # "auto": cuda when available, else cpu
    torch_threads: int | None = None
    score_batch_size: int = 65536


@dataclass
class RankerInputs:
    """Model inputs for a set of rows, gathered from the per-item features: what the ONNX graph receives."""

    user_index: torch.Tensor  # int64 [N]
    item_index: torch.Tensor  # int64 [N]
    sid_codes: torch.Tensor  # int64 [N, L]
    sid_weights: torch.Tensor  # float32 [N, L]
    history_index: torch.Tensor  # int64 [N, H]
    history_codes: torch.Tensor  # int64 [N, H, L]
    history_weights: torch.Tensor  # float32 [N, H, L]

    @classmethod
    def gather(cls, rows: RankingRows, items: ItemFeatures, user_index: np.ndarray | None = None) -> RankerInputs:
        """`user_index` maps rows.user to the model's user index (e.g. 0 for users unseen in training)."""
        users = rows.user if user_index is None else user_index[rows.user]
        return cls(*(torch.as_tensor(a) for a in (users, rows.item, items.codes[rows.item], items.weights[rows.item],
                                                  rows.history, items.codes[rows.history],
                                                  items.weights[rows.history])))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.user_index, self.item_index, self.sid_codes, self.sid_weights, self.history_index,
                self.history_codes, self.history_weights)

    def slice(self, start: int, stop: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        return tuple(t[start:stop].to(device) if device else t[start:stop] for t in self.tensors())

    def __len__(self) -> int:
        return len(self.user_index)


@torch.no_grad()
def predict(model: PPNetRanker, inputs: RankerInputs, batch_size: int = 65536) -> np.ndarray:
    """Click probabilities [N] in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [torch.sigmoid(model(*inputs.slice(start, start + batch_size, device))).cpu()
             for start in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)


def train_ranker(config: RankerConfig, train: RankerInputs, labels: np.ndarray, valid: RankerInputs,
                 valid_labels: np.ndarray, train_config: RankerTrainConfig,
                 progress: Callable[[dict], None] | None = None) -> tuple[PPNetRanker, list[dict]]:
    """Fit a ranker; returns it (best validation epoch, on the CPU, eval mode) and one record per epoch."""
    device = resolve_device(train_config.device)
    previous_threads = torch.get_num_threads()
    if train_config.torch_threads:
        torch.set_num_threads(train_config.torch_threads)
    try:
        torch.manual_seed(train_config.seed)
        model = PPNetRanker(config).to(device)  # built on the CPU first: the seed fixes the weights on any device
        optimizer = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
        generator = torch.Generator().manual_seed(train_config.seed)
        targets = torch.as_tensor(np.asarray(labels, np.float32))
        history, best, best_state, stale, started = [], -1.0, None, 0, time.perf_counter()
        for epoch in range(1, train_config.epochs + 1):
            model.train()
            order = torch.randperm(len(train), generator=generator)
            total = 0.0
            for rows in order.split(train_config.batch_size):
                batch = [t[rows].to(device) for t in train.tensors()]
                loss = F.binary_cross_entropy_with_logits(model(*batch), targets[rows].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            valid_auc = auc(valid_labels, predict(model, valid, train_config.score_batch_size))
            record = {"epoch": epoch, "loss": total / max(len(train), 1), "valid_auc": valid_auc,
                      "seconds": time.perf_counter() - started}
            history.append(record)
            if progress is not None:
                progress(record)
            if np.isnan(valid_auc) or valid_auc > best:  # NaN: a one-class validation slice cannot select
                best, stale = valid_auc, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= train_config.patience:
                    break
    finally:
        torch.set_num_threads(previous_threads)
    model = model.cpu()
    model.load_state_dict(best_state)
    return model.eval(), history


def evaluate(scores: np.ndarray, rows: RankingRows, item_buckets: np.ndarray) -> dict[str, float]:
    """AUC and GAUC of `scores` on `rows`, overall and per popularity bucket of the row's item; rows.user must
    identify users (GAUC groups by it)."""
    return ranking_metrics(rows.user, rows.label, scores, item_buckets[rows.item], BUCKETS)
