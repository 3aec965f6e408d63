"""Group `downstream`: the PPNet ranking model on the chronological split, fed by the SID tables.

`ranking_model` writes `artifacts/ranking/<ranker_version>/`: `ranker.pt` (config and weights, loads with
weights_only=True), `vocabulary.npz` (the users and items behind the model's indices), `holdout.npz` (test rows'
model inputs, for the export's parity check), `metrics.json` and `auc_by_bucket.png`. The version is a hash of
the checkpoint; `artifacts/ranking/current` names the latest.
"""

import hashlib
import json
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import numpy as np
import torch
from dagster_duckdb import DuckDBResource

from assets.plots import auc_by_bucket
from assets.ranking_inputs import fit_ranking, load_ranking_data
from assets.sid_features import load_feature_set
from assets.resources import RankingSettings, SidflowHome
from data_checks.checks import WAREHOUSE_POOL
from sid_models.ranking_data import RANKER_INPUTS

GROUP = "downstream"
HOLDOUT_ROWS = 20000  # test rows kept for the ONNX parity check


def ranking_dir(home: SidflowHome) -> Path:
    return home.home_path / "artifacts" / "ranking"


def current_ranker(home: SidflowHome) -> tuple[str, Path]:
    pointer = ranking_dir(home) / "current"
    if not pointer.is_file():
        raise FileNotFoundError(f"{pointer}: no trained ranker; materialise ranking_model first")
    version = pointer.read_text().strip()
    return version, ranking_dir(home) / version


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}


@dg.asset(group_name=GROUP, deps=["splits", "item_stats", "sid_lookup", "sid_importance", "baseline_sid_lookup"],
          pool=WAREHOUSE_POOL, kinds={"pytorch"})
def ranking_model(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                  ranking: RankingSettings) -> dg.MaterializeResult:
    """PPNet ranker on `ranking.feature_set` (ADC-SID tokens weighted by their importance by default), trained on
    the chronological train split with sampled negatives; test AUC/GAUC overall and for head and tail items."""
    with warehouse.get_connection() as con:
        data = load_ranking_data(con, ranking)
        features = load_feature_set(con, home, ranking.feature_set, data.item_ids, ranking.importance_weights)
    context.log.info(f"ranking: {len(data.train)} train, {len(data.valid)} valid, {len(data.test)} test rows; "
                     f"features {ranking.feature_set} ({ranking.ranker_features}), negatives {ranking.negatives}")
    fit = fit_ranking(data, features, ranking, home.device,
                      lambda record: context.log.info(
                          f"ranking: epoch {record['epoch']} loss {record['loss']:.4f} "
                          f"valid AUC {record['valid_auc']:.4f}"))
    directory = ranking_dir(home)
    staging = directory / "staging.pt"
    staging.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(fit.config), "state": fit.model.state_dict()}, staging)
    version = f"ranker-{hashlib.sha256(staging.read_bytes()).hexdigest()[:12]}"
    target = directory / version
    target.mkdir(parents=True, exist_ok=True)
    shutil.move(staging, target / "ranker.pt")
    np.savez(target / "vocabulary.npz", users=data.model_user_ids.astype(str), items=np.array(data.item_ids, str))
    holdout = fit.test_inputs
    np.savez(target / "holdout.npz", **{name: tensor.numpy() for name, tensor in
                                        zip(RANKER_INPUTS, holdout.slice(0, HOLDOUT_ROWS))})
    summary = {"ranker_version": version, "feature_set": ranking.feature_set, "features": ranking.ranker_features,
               "tokenizer_version": features.tokenizer_version, "token_names": features.token_names,
               "codebook_sizes": features.codebook_sizes, "importance_weights": ranking.importance_weights,
               "negatives": ranking.negatives,
               "negatives_per_positive": ranking.negatives_per_positive,
               "history_length": fit.config.history_length}
    (target / "metrics.json").write_text(json.dumps({
        **summary, "test": fit.metrics, "popularity_baseline": fit.popularity_metrics, "history": fit.history,
        "rows": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        "negatives_not_found": data.negatives_not_found, "settings": ranking.model_dump(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}},
        indent=2, default=float))
    plot = auc_by_bucket({"ranker": fit.metrics, "popularity": fit.popularity_metrics}, target / "auc_by_bucket.png")
    (directory / "current").write_text(version)
    metrics = fit.metrics
    return dg.MaterializeResult(metadata={
        "summary": f"{version}: test AUC {metrics['auc']:.4f}, GAUC {metrics['gauc']:.4f}, tail AUC "
                   f"{metrics['auc_tail']:.4f} (popularity AUC {fit.popularity_metrics['auc']:.4f})",
        **{k: v for k, v in summary.items() if isinstance(v, str)},
        "test_metrics": dg.MetadataValue.json(_rounded(metrics)),
        "popularity_baseline": dg.MetadataValue.json(_rounded(fit.popularity_metrics)),
        "auc": round(metrics["auc"], 5), "gauc": round(metrics["gauc"], 5),
        "auc_head": round(metrics["auc_head"], 5), "auc_tail": round(metrics["auc_tail"], 5),
        "epochs": len(fit.history), "auc_by_bucket": dg.MetadataValue.md(plot),
        "checkpoint": dg.MetadataValue.path(str(target / "ranker.pt")), "torch_version": torch.__version__})
