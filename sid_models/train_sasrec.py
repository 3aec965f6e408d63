"""Train SASRec on a leave-one-out split: early stopping on validation NDCG@10, resumable checkpoints, test
metrics of the best model.

Script: python -m sid_models.train_sasrec --data events.npz --out DIR [--epochs N ...]
The npz holds user_index, item_index (1..n_items), split ('train'/'valid'/'test' or 0/1/2) and n_items, rows
ordered by (user, sequence position). Writes DIR/metrics.json, DIR/item_embeddings.npy and DIR/checkpoints/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from sid_models.devices import autocast_dtype, resolve_device
from sid_models.metrics import metrics_from_ranks, target_ranks
from sid_models.sasrec import SASRec, SASRecConfig
from sid_models.sequences import EvalSet, LeaveOneOut, evaluation_inputs, training_batches, trim_padding


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256
    # Runs of shuffled users sorted by length before batching (see training_batches): on Amazon Beauty 16 halves
    # CPU epoch time at the same test NDCG@10, as the loss weighs every position equally (see train).
    sort_window: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0  # AdamW; 0 is plain Adam
    seed: int = 0
    eval_every: int = 1  # epochs between validations (the last epoch is always validated)
    patience: int = 10  # validations without a better valid NDCG@10 before stopping
    device: str = "auto"  # "auto": cuda if available, else cpu
    amp: str = "bf16"  # autocast dtype on CUDA: "bf16", "fp16" or "off"; CPU always runs fp32
    checkpoint_every: int = 1  # epochs between last.pt writes (the final epoch is always written)
    max_seconds: float | None = None  # stop after the epoch that exceeds this budget (counted across resumes)
    torch_threads: int | None = None  # torch.set_num_threads when given
    eval_batch_size: int = 1024


@dataclass
class TrainResult:
    model: SASRec  # best validation state, on CPU, in eval mode
    history: list[dict]  # one record per validation: epoch, step, loss, valid_*, seconds
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]  # recall@5/10, ndcg@5/10 of the best model
    epochs: int  # epochs completed, resumed ones included
    steps: int
    stop_reason: str  # "epochs", "patience" or "time"
    train_seconds: float
    device: str


@torch.no_grad()
def evaluate(model: SASRec, eval_set: EvalSet, batch_size: int = 1024) -> dict[str, float]:
    """Full-catalogue recall@5/10 and ndcg@5/10 of predicting each target from the end of its history."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ranks = []
    # Rows in order of history length, so that trimming the common padding leaves short batches.
    by_length = np.argsort(eval_set.history.lengths, kind="stable")
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start:start + batch_size]
        (inputs,) = trim_padding(evaluation_inputs(eval_set.history, rows, model.config.max_len))
        hidden = model(inputs.to(device))[:, -1]
        targets = torch.from_numpy(eval_set.target[rows]).to(device)
        ranks.append(target_ranks(model.scores(hidden).float(), targets).cpu())
    model.train(was_training)
    return metrics_from_ranks(torch.cat(ranks) if ranks else torch.empty(0))


def _cpu_state(model: SASRec) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def train(data: LeaveOneOut, model_config: SASRecConfig, train_config: TrainConfig,
          checkpoint_dir: Path | None = None, progress: Callable[[dict], None] | None = None,
          resume: bool = False) -> TrainResult:
    """Train from scratch, or with `resume` continue from checkpoint_dir/last.pt up to `train_config.epochs`."""
    if len(data.valid.users) == 0:
        raise ValueError("early stopping needs validation targets; the split has no 'valid' rows")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    if train_config.torch_threads:
        torch.set_num_threads(train_config.torch_threads)
    device = resolve_device(train_config.device)
    amp_dtype = autocast_dtype(train_config.amp, device)
    torch.manual_seed(train_config.seed)
    rng = np.random.default_rng(train_config.seed)
    model = SASRec(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, betas=(0.9, 0.98),
                                  weight_decay=train_config.weight_decay)
    # Loss scaling is only needed for fp16; the disabled scaler is a no-op pass-through.
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    # Everything the loop needs to continue, saved in last.pt as plain Python values.
    state = {"epoch": 0, "step": 0, "best_ndcg": -1.0, "best_epoch": 0, "stale": 0, "seconds": 0.0, "history": []}
    best_state = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        # Loaded to CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the model's device.
        checkpoint = torch.load(checkpoint_dir / "last.pt", map_location="cpu", weights_only=True)
        if checkpoint["model_config"] != asdict(model_config):
            raise ValueError(f"checkpoint was trained with {checkpoint['model_config']}, not {asdict(model_config)}")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        rng.bit_generator.state = checkpoint["numpy_rng"]
        torch.set_rng_state(checkpoint["torch_rng"])
        if device.type == "cuda" and checkpoint["cuda_rng"] is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        state = checkpoint["progress"]
        if (checkpoint_dir / "best.pt").exists():
            best_state = torch.load(checkpoint_dir / "best.pt", map_location="cpu", weights_only=True)["model"]

    def save_last() -> None:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "progress": state, "model_config": asdict(model_config),
                    "train_config": asdict(train_config)}, checkpoint_dir / "last.pt")

    # Each batch's loss is its sum over positions divided by the mean number of positions per batch, so every
    # position weighs the same whatever batch it lands in; a per-batch mean would overweight the positions of
    # short users whenever sort_window groups users of similar lengths.
    positions_per_user = np.minimum(data.train.lengths - 1, model_config.max_len).clip(min=0)
    batches_per_epoch = -(-int((positions_per_user > 0).sum()) // train_config.batch_size)
    positions_per_batch = max(int(positions_per_user.sum()) / max(batches_per_epoch, 1), 1.0)
    started = time.perf_counter() - state["seconds"]
    stop_reason = "patience" if state["stale"] >= train_config.patience else "epochs"
    while stop_reason == "epochs" and state["epoch"] < train_config.epochs:
        model.train()
        loss_sum = torch.zeros((), device=device)
        for inputs, targets in training_batches(data.train, model_config.max_len, train_config.batch_size, rng,
                                                  train_config.sort_window):
            inputs, targets = (t.to(device, non_blocking=True) for t in trim_padding(inputs, targets))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                batch_loss = model.loss(model(inputs), targets, reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(batch_loss / positions_per_batch).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += batch_loss.detach()
            state["step"] += 1
        state["epoch"] += 1
        state["seconds"] = time.perf_counter() - started
        out_of_time = train_config.max_seconds is not None and state["seconds"] >= train_config.max_seconds
        final = out_of_time or state["epoch"] >= train_config.epochs
        if state["epoch"] % train_config.eval_every == 0 or final:
            valid = evaluate(model, data.valid, train_config.eval_batch_size)
            state["seconds"] = time.perf_counter() - started
            record = {"epoch": state["epoch"], "step": state["step"],
                      "loss": loss_sum.item() / max(int(positions_per_user.sum()), 1),  # mean per position
                      **{f"valid_{name}": value for name, value in valid.items()}, "seconds": state["seconds"]}
            state["history"].append(record)
            if valid["ndcg@10"] > state["best_ndcg"]:
                state.update(best_ndcg=valid["ndcg@10"], best_epoch=state["epoch"], stale=0)
                best_state = _cpu_state(model)
                if checkpoint_dir is not None:
                    torch.save({"model": best_state, "epoch": state["epoch"], "valid": valid,
                                "model_config": asdict(model_config)}, checkpoint_dir / "best.pt")
            else:
                state["stale"] += 1
            if progress is not None:
                progress(record)
        if out_of_time:
            stop_reason = "time"
        elif state["stale"] >= train_config.patience:
            stop_reason = "patience"
        if checkpoint_dir is not None and (state["epoch"] % train_config.checkpoint_every == 0
                                           or stop_reason != "epochs" or state["epoch"] >= train_config.epochs):
            save_last()

    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, data.test, train_config.eval_batch_size)
    best_record = next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), {})
    return TrainResult(model=model.cpu().eval(), history=state["history"], best_epoch=state["best_epoch"],
                       best_valid={k[len("valid_"):]: v for k, v in best_record.items() if k.startswith("valid_")},
                       test=test, epochs=state["epoch"], steps=state["step"], stop_reason=stop_reason,
                       train_seconds=state["seconds"], device=str(device))


def _add_config_arguments(parser: argparse.ArgumentParser, config_class: type, skip: tuple[str, ...]) -> None:
    """One --flag per dataclass field, typed from its annotation, defaulting to the dataclass default."""
    for field in fields(config_class):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
            continue
        parse = float if "float" in field.type else int if "int" in field.type else str
        parser.add_argument(flag, type=parse, default=field.default)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    parser.add_argument("--verbose", action="store_true", help="print one JSON line per validation")
    _add_config_arguments(parser, SASRecConfig, skip=("n_items",))
    _add_config_arguments(parser, TrainConfig, skip=())
    args = vars(parser.parse_args(argv))

    # torchrun sets WORLD_SIZE/LOCAL_RANK; one process per node is supported, data parallelism is not.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("train_sasrec runs as a single process; launch torchrun with --nproc_per_node=1")
    local_rank = os.environ.get("LOCAL_RANK")
    if args["device"] == "auto" and local_rank is not None and torch.cuda.is_available():
        args["device"] = f"cuda:{int(local_rank)}"

    with np.load(args["data"], allow_pickle=False) as events:
        n_items = int(events["n_items"])
        data = LeaveOneOut.from_events(events["user_index"], events["item_index"], events["split"], n_items)
    model_config = SASRecConfig(n_items=n_items, **{f.name: args[f.name] for f in fields(SASRecConfig)
                                                    if f.name != "n_items"})
    train_config = TrainConfig(**{f.name: args[f.name] for f in fields(TrainConfig)})
    out: Path = args["out"]
    out.mkdir(parents=True, exist_ok=True)
    result = train(data, model_config, train_config, checkpoint_dir=out / "checkpoints", resume=args["resume"],
                   progress=(lambda record: print(json.dumps(record), flush=True)) if args["verbose"] else None)
    metrics = {"test": result.test, "best_valid": result.best_valid, "best_epoch": result.best_epoch,
               "epochs": result.epochs, "steps": result.steps, "stop_reason": result.stop_reason,
               "train_seconds": result.train_seconds, "device": result.device,
               "model_config": asdict(model_config), "train_config": asdict(train_config),
               "history": result.history}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    np.save(out / "item_embeddings.npy", result.model.item_embeddings().numpy())


if __name__ == "__main__":
    main()
