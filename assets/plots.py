"""Plots for asset metadata: a PNG beside the artifacts and the same image inline for the Dagster UI."""

from __future__ import annotations

import base64
import io
from pathlib import Path

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
