"""Tokenizers (group `tokenizer`): ADC-SID as `sid_tokenizer` and the baselines (`rqvae_tokenizer`,
`rqkmeans_tokenizer`, `opq_tokenizer`), each fitted on the item features and saved as a versioned checkpoint
`artifacts/tokenizers/<kind>/<tokenizer_version>/tokenizer.pt`, with `metrics.json` and plots beside it.

The version is the kind plus a hash of the checkpoint's bytes: the same fitted parameters always carry the same
version, and a retrained tokenizer that differs gets a new one. `artifacts/tokenizers/<kind>/current` names the
version that the SID tables use.
"""

import hashlib
import json
import platform
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import torch
from dagster_duckdb import DuckDBResource

from assets.feature_store import catalogue_item_ids, tokenizer_features
from assets.plots import codebook_usage, loss_curves
from assets.resources import SidflowHome, TokenizerSettings
from data_checks.checks import WAREHOUSE_POOL
from sid_models.registry import build_tokenizer, load_tokenizer
from sid_models.sid_metrics import quantization_metrics
from sid_models.tokenizer import Tokenizer

GROUP = "tokenizer"
BASELINE_KINDS = ("rqvae", "rqkmeans", "opq")
FEATURE_ASSETS = ["content_embeddings", "behavior_embeddings"]


def tokenizer_dir(home: SidflowHome, kind: str) -> Path:
    return home.home_path / "artifacts" / "tokenizers" / kind


def current_version(home: SidflowHome, kind: str) -> str:
    pointer = tokenizer_dir(home, kind) / "current"
    if not pointer.is_file():
        raise FileNotFoundError(f"{pointer}: no fitted {kind} tokenizer; materialise its tokenizer asset first")
    return pointer.read_text().strip()


def load_current(home: SidflowHome, kind: str) -> tuple[str, Tokenizer]:
    version = current_version(home, kind)
    return version, load_tokenizer(tokenizer_dir(home, kind) / version / "tokenizer.pt")


def catalogue_features(warehouse: DuckDBResource, home: SidflowHome) -> tuple[list[str], dict, dict]:
    with warehouse.get_connection() as con:
        item_ids = catalogue_item_ids(con)
    features, hashes = tokenizer_features(home.home_path, item_ids)
    return item_ids, features, hashes


def _save_versioned(tokenizer: Tokenizer, directory: Path) -> str:
    staging = directory / "staging.pt"
    tokenizer.save(staging)
    version = f"{tokenizer.kind}-{hashlib.sha256(staging.read_bytes()).hexdigest()[:12]}"
    target = directory / version
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(staging, target / "tokenizer.pt")
    return version


def fit_tokenizer(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                  settings: TokenizerSettings, kind: str) -> dg.MaterializeResult:
    """Fit one tokenizer on the catalogue's features, save it under a new version, and report its metrics."""
    item_ids, features, hashes = catalogue_features(warehouse, home)
    tokenizer = build_tokenizer(kind, settings.for_kind(kind), device=home.device)
    shapes = {name: list(matrix.shape) for name, matrix in features.items()}
    context.log.info(f"{kind}: fitting on {len(item_ids)} items, modalities {shapes}")

    def progress(record: dict) -> None:
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()
                          if not isinstance(v, (list, dict)))
        context.log.info(f"{kind}: {shown}")

    report = tokenizer.fit(features, progress)
    codes = tokenizer.encode(features)
    metrics = {**quantization_metrics(codes, tokenizer.codebook_sizes),
               "recon_loss": tokenizer.reconstruction_loss(features), "fit_seconds": round(report.seconds, 2),
               "device": report.device, "anti_collapse": report.anti_collapse, "items": len(item_ids)}
    directory = tokenizer_dir(home, kind)
    version = _save_versioned(tokenizer, directory)
    target = directory / version
    (target / "metrics.json").write_text(json.dumps({
        **metrics, "tokenizer_version": version, "token_names": tokenizer.token_names,
        "codebook_sizes": tokenizer.codebook_sizes, "settings": settings.for_kind(kind), "feature_hashes": hashes,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "history": report.history}, indent=2, default=float))
    usage_plot = codebook_usage(codes, tokenizer.token_names, tokenizer.codebook_sizes, target / "codebook_usage.png")
    loss_plot = loss_curves(report.history, target / "training.png") if report.history else "(no training history)"
    (directory / "current").write_text(version)
    return dg.MaterializeResult(metadata={
        "summary": f"{version}: entropy {metrics['entropy']:.3f} nats, utilisation {metrics['utilization']:.3f}, "
                   f"collisions {metrics['collision_rate']:.3f}, {report.seconds:.0f} s on {report.device}",
        "tokenizer_version": version, "entropy": round(metrics["entropy"], 4),
        "utilization": round(metrics["utilization"], 4), "collision_rate": round(metrics["collision_rate"], 4),
        "max_collision_group": int(metrics["max_collision_group"]), "recon_loss": round(metrics["recon_loss"], 5),
        "entropy_per_codebook": dg.MetadataValue.json(dict(zip(tokenizer.token_names,
                                                               metrics["entropy_per_codebook"]))),
        "fit_seconds": round(report.seconds, 2), "device": report.device,
        "anti_collapse": dg.MetadataValue.json(report.anti_collapse), "feature_hashes": dg.MetadataValue.json(hashes),
        "checkpoint": dg.MetadataValue.path(str(target / "tokenizer.pt")),
        "codebook_usage": dg.MetadataValue.md(usage_plot), "training_curves": dg.MetadataValue.md(loss_plot),
        "torch_version": torch.__version__})


@dg.asset(group_name=GROUP, deps=FEATURE_ASSETS, pool=WAREHOUSE_POOL, kinds={"pytorch"})
def sid_tokenizer(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                  tokenizers: TokenizerSettings) -> dg.MaterializeResult:
    """ADC-SID fitted on the content and behavior embeddings: on the GPU when one is present, else the CPU."""
    return fit_tokenizer(context, warehouse, home, tokenizers, "adc_sid")


def baseline_tokenizer_asset(kind: str) -> dg.AssetsDefinition:
    @dg.asset(name=f"{kind}_tokenizer", group_name=GROUP, deps=FEATURE_ASSETS, pool=WAREHOUSE_POOL,
              kinds={"pytorch"}, description=f"The {kind} baseline tokenizer, for comparison with ADC-SID.")
    def baseline(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                 tokenizers: TokenizerSettings) -> dg.MaterializeResult:
        return fit_tokenizer(context, warehouse, home, tokenizers, kind)
    return baseline


BASELINE_TOKENIZERS = [baseline_tokenizer_asset(kind) for kind in BASELINE_KINDS]
