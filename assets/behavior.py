"""Group `features`, behavioral side: SASRec trained on the leave-one-out train split, and its item
embedding table as `behavior_embeddings`."""

import json
import platform
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import numpy as np
import torch
from dagster_duckdb import DuckDBResource

from assets.feature_store import catalogue_item_ids, features_dir, write_matrix
from assets.plots import training_curves
from assets.resources import SASRecSettings, SidflowHome
from data_checks.checks import WAREHOUSE_POOL
from sid_models.metrics import popularity_metrics, spearman
from sid_models.sasrec import SASRec, SASRecConfig
from sid_models.sequences import LeaveOneOut
from sid_models.train_sasrec import train

GROUP = "features"

# Items are numbered 1..n in catalogue order (0 is SASRec's padding), users 0..m-1; rows in sequence order.
SPLIT_EVENTS_SQL = """
    WITH catalogue AS (SELECT item_id, row_number() OVER (ORDER BY item_id) AS item_index FROM items),
    users AS (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS user_index
              FROM (SELECT DISTINCT user_id FROM splits))
    SELECT u.user_index, c.item_index, CASE s.loo_split WHEN 'train' THEN 0 WHEN 'valid' THEN 1 ELSE 2 END AS split
    FROM splits s JOIN users u USING (user_id) JOIN catalogue c USING (item_id)
    ORDER BY u.user_index, s.seq_pos"""


def sasrec_dir(home: SidflowHome) -> Path:
    return home.home_path / "artifacts" / "sasrec"


def load_leave_one_out(warehouse: DuckDBResource) -> tuple[LeaveOneOut, int]:
    with warehouse.get_connection() as con:
        events = con.execute(SPLIT_EVENTS_SQL).fetchnumpy()
        n_items = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
    return LeaveOneOut.from_events(events["user_index"], events["item_index"], events["split"], n_items), n_items


@dg.asset(group_name=GROUP, deps=["splits", "items"], pool=WAREHOUSE_POOL, kinds={"pytorch"})
def sasrec_model(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                 sasrec: SASRecSettings) -> dg.MaterializeResult:
    """SASRec trained on the `train` rows of the leave-one-out split only; early stopping on validation
    NDCG@10; the best state in `artifacts/sasrec/checkpoints/best.pt`. Test metrics (full catalogue) in
    the metadata and `artifacts/sasrec/metrics.json`, beside a popularity ranking for scale."""
    data, n_items = load_leave_one_out(warehouse)
    model_config, train_config = sasrec.configs(n_items, home.device)
    directory = sasrec_dir(home)
    context.log.info(f"SASRec: {len(data.train.items)} train events, {n_items} items, "
                     f"{len(data.valid.target)} valid and {len(data.test.target)} test users")

    def progress(record: dict) -> None:
        context.log.info("epoch {epoch} step {step}: loss {loss:.4f}, valid ndcg@10 {valid_ndcg@10:.4f} "
                         "({seconds:.0f} s)".format(**record))

    result = train(data, model_config, train_config, checkpoint_dir=directory / "checkpoints", progress=progress,
                   resume=sasrec.resume)
    popularity = popularity_metrics(data.train, data.test.target)
    metrics = {"test": result.test, "best_valid": result.best_valid, "popularity_test": popularity,
               "best_epoch": result.best_epoch, "epochs": result.epochs, "steps": result.steps,
               "stop_reason": result.stop_reason, "train_seconds": round(result.train_seconds, 2),
               "device": result.device, "model_config": asdict(model_config), "train_config": asdict(train_config),
               "versions": {"torch": torch.__version__, "python": platform.python_version()},
               "history": result.history}
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot = training_curves(result.history, directory / "training.png")
    return dg.MaterializeResult(metadata={
        "summary": f"test ndcg@10={result.test['ndcg@10']:.4f} (popularity {popularity['ndcg@10']:.4f}), "
                   f"{result.epochs} epochs on {result.device}",
        **{f"test_{k}": round(v, 5) for k, v in result.test.items()},
        **{f"popularity_test_{k}": round(v, 5) for k, v in popularity.items()},
        "best_epoch": result.best_epoch, "epochs": result.epochs, "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 1), "device": result.device,
        "checkpoint": dg.MetadataValue.path(str(directory / "checkpoints" / "best.pt")),
        "metrics_file": dg.MetadataValue.path(str(directory / "metrics.json")),
        "training_curves": dg.MetadataValue.md(plot), "torch_version": torch.__version__})


@dg.asset(group_name=GROUP, deps=["sasrec_model"], pool=WAREHOUSE_POOL, kinds={"numpy"})
def behavior_embeddings(warehouse: DuckDBResource, home: SidflowHome) -> dg.MaterializeResult:
    """SASRec's item embedding table, not L2-normalised (ADC-SID reads popularity from the norm), as
    `artifacts/features/behavior.npy`. Items without train interactions have no behavioral evidence: their
    row is zero (norm 0) and flagged as fallback. Metadata: Spearman(norm, train popularity)."""
    checkpoint = torch.load(sasrec_dir(home) / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    model = SASRec(SASRecConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    with warehouse.get_connection() as con:
        item_ids = catalogue_item_ids(con)
        train_counts = np.array([c for (c,) in con.execute("""
            SELECT count(s.item_id) FILTER (s.loo_split = 'train') FROM items i LEFT JOIN splits s USING (item_id)
            GROUP BY i.item_id ORDER BY i.item_id""").fetchall()], dtype=np.int64)
    if model.config.n_items != len(item_ids):
        raise dg.Failure(f"sasrec_model was trained on {model.config.n_items} items, the catalogue has "
                         f"{len(item_ids)}: materialise sasrec_model again")
    vectors = model.item_embeddings().detach().numpy().copy()
    fallback = train_counts == 0
    vectors[fallback] = 0.0
    norms = np.linalg.norm(vectors, axis=1)
    correlation = spearman(norms[~fallback], train_counts[~fallback]) if (~fallback).sum() > 1 else float("nan")
    info = write_matrix(features_dir(home.home_path), "behavior", item_ids, vectors, fallback)
    return dg.MaterializeResult(metadata={
        **info, "summary": f"{vectors.shape[0]} x {vectors.shape[1]}, {int(fallback.sum())} fallback rows, "
                           f"spearman(norm, popularity)={correlation:.2f}",
        "spearman_norm_popularity": round(correlation, 4), "trained_epoch": int(checkpoint["epoch"]),
        "mean_norm": float(norms[~fallback].mean()) if (~fallback).any() else 0.0})
