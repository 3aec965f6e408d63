"""Plots for asset metadata: a PNG beside the artifacts and the same image inline for the Dagster UI."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(history: list[dict], path: Path) -> str:
    """Loss and validation NDCG@10 per evaluated epoch; saves `path` and returns Markdown showing it."""
    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, ndcg_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_axis.plot(epochs, [r["loss"] for r in history], marker=".")
    loss_axis.set(xlabel="epoch", ylabel="train loss", title="loss")
    ndcg_axis.plot(epochs, [r["valid_ndcg@10"] for r in history], marker=".", color="tab:green")
    ndcg_axis.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10")
    return save_figure(figure, path)


def save_figure(figure, path: Path) -> str:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    plt.close(figure)
    return f"![{path.stem}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def codebook_usage(codes: np.ndarray, token_names: list[str], codebook_sizes: list[int], path: Path) -> str:
    """One panel per SID position: how many items use each code, codes sorted by use (a flat profile means an
    evenly used codebook; a cliff means collapse)."""
    columns = min(len(token_names), 4)
    rows = -(-len(token_names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for position, (name, size) in enumerate(zip(token_names, codebook_sizes)):
        counts = np.sort(np.bincount(codes[:, position], minlength=size))[::-1]
        axis = axes[position // columns][position % columns]
        axis.bar(np.arange(size), counts, width=1.0)
        axis.set(title=f"{name}: {int((counts > 0).sum())}/{size} used", xlabel="code (by use)", ylabel="items")
    for extra in range(len(token_names), rows * columns):
        axes[extra // columns][extra % columns].axis("off")
    return save_figure(figure, path)


def loss_curves(history: list[dict], path: Path) -> str:
    """Every numeric loss term of a training history against its epoch (or iteration)."""
    step_key = "epoch" if "epoch" in history[0] else next(iter(history[0]))
    terms = [k for k, v in history[0].items() if k != step_key and isinstance(v, (int, float))
             and ("loss" in k or k in ("recon", "codebook", "commitment", "alignment", "load_balance"))]
    terms = terms or [k for k, v in history[0].items() if k != step_key and isinstance(v, (int, float))][:4]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    steps = [r.get(step_key, i) for i, r in enumerate(history)]
    for term in terms:
        axis.plot(steps, [r.get(term, np.nan) for r in history], label=term)
    axis.set(xlabel=step_key, ylabel="loss", title="training")
    axis.legend(fontsize=7)
    return save_figure(figure, path)


def auc_by_bucket(series: dict[str, dict[str, float]], path: Path, buckets=("head", "mid", "tail")) -> str:
    """Grouped bars: AUC overall and per item popularity bucket, one bar per scorer (e.g. ranker, popularity)."""
    return metric_by_bucket(series, path, "auc", "AUC", buckets, chance=0.5)


def metric_by_bucket(series: dict[str, dict[str, float]], path: Path, metric: str, label: str,
                     buckets=("head", "mid", "tail"), chance: float | None = None) -> str:
    """Grouped bars: `metric` overall and per item popularity bucket (keys `{metric}_{bucket}`), one bar per
    series (scorer or tokenizer)."""
    groups = ["all", *buckets]
    figure, axis = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(series), 1)
    for offset, (name, metrics) in enumerate(series.items()):
        values = [metrics.get(metric if group == "all" else f"{metric}_{group}", np.nan) for group in groups]
        axis.bar(np.arange(len(groups)) + offset * width, values, width=width, label=name)
    if chance is not None:
        axis.axhline(chance, color="grey", linewidth=0.8, linestyle="--")
    axis.set(xticks=np.arange(len(groups)) + width * (len(series) - 1) / 2, xticklabels=groups,
             ylim=(0, 1) if chance is not None else None, ylabel=label, title=f"test {label} by item popularity")
    axis.legend(fontsize=7)
    return save_figure(figure, path)


def recall_at_k(series: dict[str, dict[str, float]], path: Path, ks=(5, 10, 50, 100)) -> str:
    """Recall@K against K, one line per series (e.g. per tokenizer)."""
    figure, axis = plt.subplots(figsize=(6, 3.2))
    for name, metrics in series.items():
        shown = [k for k in ks if f"recall@{k}" in metrics]
        axis.plot(shown, [metrics[f"recall@{k}"] for k in shown], marker="o", label=name)
    axis.set(xscale="log", xticks=list(ks), xticklabels=[str(k) for k in ks], xlabel="K", ylabel="Recall@K",
             title="test Recall@K over the full catalogue")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
