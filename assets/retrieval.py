"""Group `downstream`, generative side: one encoder-decoder retriever per tokenizer, trained on the leave-one-out
train split and decoded with trie-constrained beam search over the full catalogue, and one report comparing
the tokenizers on the same data."""

import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import torch
from dagster_duckdb import DuckDBResource

from assets.behavior import load_leave_one_out
from assets.feature_store import catalogue_item_ids
from assets.plots import metric_by_bucket, recall_at_k, training_curves
from assets.resources import RetrievalSettings, SidflowHome
from assets.sid_features import FeatureSet, load_feature_set, popularity_buckets
from data_checks.checks import WAREHOUSE_POOL
from sid_models.metrics import popularity_metrics
from sid_models.retriever import RetrieverConfig, SidRetriever
from sid_models.sequences import LeaveOneOut
from sid_models.train_retriever import (KS, RetrievalData, RetrieverTrainConfig, evaluate, level_weights,
                                        train_retriever)

GROUP = "downstream"
REPORT_KEYS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100", "ndcg@100")


def retrieval_dir(home: SidflowHome) -> Path:
    return home.home_path / "artifacts" / "retrieval"


@dg.asset(group_name=GROUP, deps=["splits", "items", "item_stats", "sid_lookup", "sid_importance",
                                  "baseline_sid_lookup"], pool=WAREHOUSE_POOL, kinds={"pytorch"})
def generative_retriever(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                         retrieval: RetrievalSettings) -> dg.MaterializeResult:
    """Per tokenizer of `retrieval.tokenizers`: an encoder-decoder that generates the next item's SID
    (`artifacts/retrieval/<tokenizer>/<version>/`: retriever.pt, metrics.json, training.png), with test
    Recall/NDCG@5/10/50/100 overall and for head and tail items; `report.md` compares the tokenizers."""
    split, n_items = load_leave_one_out(warehouse)
    with warehouse.get_connection() as con:
        item_ids = catalogue_item_ids(con)
        buckets = popularity_buckets(con, item_ids)
        features = {name: load_feature_set(con, home, name, item_ids, retrieval.importance_weights,
                                           collision_level=True) for name in retrieval.tokenizers}
    context.log.info(f"retrieval: {len(split.train.items)} train events, {n_items} items, "
                     f"{len(split.test.target)} test users; tokenizers {', '.join(features)}")
    popularity = popularity_metrics(split.train, split.test.target, KS)
    results, directory = {}, retrieval_dir(home)
    for name, feature_set in features.items():
        fit = fit_retrieval(split, name, feature_set, retrieval, home.device, buckets, context.log.info)
        version = _save(directory / name, fit, {
            "tokenizer": name, "tokenizer_version": feature_set.tokenizer_version,
            "token_names": fit.token_names, "importance_weights": retrieval.importance_weights,
            "importance_floor": retrieval.importance_floor,
            "test": fit.metrics, "popularity_test": popularity, "train_seconds": round(fit.train_seconds, 1),
            "history": fit.history})
        results[name] = {"version": version, "metrics": fit.metrics, "train_seconds": fit.train_seconds,
                         "epochs": len(fit.history)}
        context.log.info(f"retrieval {name}: {version} test recall@10 {fit.metrics['recall@10']:.4f}, "
                         f"ndcg@10 {fit.metrics['ndcg@10']:.4f} ({fit.train_seconds:.0f} s)")
    report = comparison_report(results, popularity, len(split.test.target), retrieval.eval_beam)
    (directory / "report.md").write_text(report)
    series = {name: result["metrics"] for name, result in results.items()}
    first = next(iter(results))
    best = results[first]["metrics"]
    return dg.MaterializeResult(metadata={
        "summary": f"{first} {results[first]['version']}: test recall@10 {best['recall@10']:.4f}, "
                   f"ndcg@10 {best['ndcg@10']:.4f} (popularity {popularity['recall@10']:.4f}); "
                   f"{len(results)} tokenizers compared",
        **{f"{first}_{key}": round(best[key], 5) for key in REPORT_KEYS if key in best},
        "report": dg.MetadataValue.md(report),
        "recall_at_k": dg.MetadataValue.md(recall_at_k(series, directory / "recall_at_k.png", KS)),
        "recall10_by_bucket": dg.MetadataValue.md(metric_by_bucket(
            series, directory / "recall10_by_bucket.png", "recall@10", "Recall@10")),
        "report_path": dg.MetadataValue.path(str(directory / "report.md")), "torch_version": torch.__version__})


@dataclass
class RetrievalFit:
    model: SidRetriever
    model_config: RetrieverConfig
    train_config: RetrieverTrainConfig
    metrics: dict  # test Recall/NDCG@K, overall and per popularity bucket of the target
    history: list[dict]  # one record per epoch
    train_seconds: float
    token_names: list[str]  # the SID positions in generation order
    data: RetrievalData  # the SIDs in generation order, with the loss weights, as trained and evaluated


def generation_order(feature_set: FeatureSet, behavior_first: bool) -> list[int]:
    """SID positions in the order the decoder generates them: the table's order (shared and content tokens
    first), or with `behavior_first` ADC-SID's behavioral tokens first. Content first won on Beauty and on the
    synthetic catalogue once the importance weights were floored (README: Benchmarks); behavior first won only
    while a zero weight left the first steps untrained for half the items."""
    behavioral = feature_set.behavioral_positions if behavior_first else []
    return behavioral + [i for i in range(len(feature_set.token_names)) if i not in behavioral]


def fit_retrieval(split: LeaveOneOut, name: str, feature_set: FeatureSet, retrieval: RetrievalSettings, device: str,
                  buckets: np.ndarray, log: Callable[[str], None]) -> RetrievalFit:
    """Train one retriever on `feature_set`'s SIDs (the asset's and the benchmark's shared path) and decode
    the test users with beam `retrieval.eval_beam` over the full catalogue."""
    feature_set = feature_set.reordered(generation_order(feature_set, retrieval.behavior_first))
    data = RetrievalData(split=split, item_codes=feature_set.items.codes,
                         token_weights=level_weights(feature_set.items.weights, retrieval.importance_floor),
                         codebook_sizes=feature_set.codebook_sizes)
    model_config = RetrieverConfig(codebook_sizes=feature_set.codebook_sizes, **retrieval.model.model_dump())
    train_config = RetrieverTrainConfig(device=device, **retrieval.train.model_dump())
    started = time.perf_counter()
    model, history = train_retriever(data, model_config, train_config, lambda record: log(
        f"retrieval {name}: epoch {record['epoch']} loss {record['loss']:.4f} valid recall@10 "
        f"{record['valid_recall@10']:.4f} ({record['seconds']:.0f} s)"))
    train_seconds = time.perf_counter() - started
    metrics = evaluate(model, data.trie(), data, split.test, beam=retrieval.eval_beam,
                       exclude_history=train_config.exclude_history, item_buckets=buckets)
    return RetrievalFit(model, model_config, train_config, metrics, history, train_seconds,
                        feature_set.token_names, data)


def _save(directory: Path, fit: RetrievalFit, summary: dict) -> str:
    """retriever.pt, metrics.json and training.png under directory/<version>; `current` names it."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / "staging.pt"
    torch.save({"config": asdict(fit.model_config), "state": fit.model.state_dict()}, staging)
    version = f"retriever-{hashlib.sha256(staging.read_bytes()).hexdigest()[:12]}"
    target = directory / version
    target.mkdir(parents=True, exist_ok=True)
    staging.replace(target / "retriever.pt")
    (target / "metrics.json").write_text(json.dumps({
        "version": version, **summary, "model_config": asdict(fit.model_config),
        "train_config": asdict(fit.train_config),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}},
        indent=2, default=float))
    training_curves(summary["history"], target / "training.png")
    (directory / "current").write_text(version)
    return version


def comparison_report(results: dict, popularity: dict, test_users: int, beam: int) -> str:
    """Markdown: one row per tokenizer (and popularity for scale), Recall/NDCG@K overall, then head/tail."""
    header = "| tokenizer | " + " | ".join(REPORT_KEYS) + " | train s | epochs |"
    lines = ["# Generative retrieval: tokenizers compared", "",
             f"Test: each user's last item, {test_users} users, full catalogue, trie-constrained beam {beam}.", "",
             header, "|" + "---|" * (len(REPORT_KEYS) + 3)]
    for name, result in results.items():
        metrics = result["metrics"]
        lines.append(f"| {name} | " + " | ".join(f"{metrics.get(k, float('nan')):.4f}" for k in REPORT_KEYS)
                     + f" | {result['train_seconds']:.0f} | {result['epochs']} |")
    lines.append("| popularity | " + " | ".join(f"{popularity.get(k, float('nan')):.4f}" for k in REPORT_KEYS)
                 + " | | |")
    lines += ["", "Recall@10 / NDCG@10 by target item popularity:", "",
              "| tokenizer | head | mid | tail |", "|---|---|---|---|"]
    for name, result in results.items():
        metrics = result["metrics"]
        lines.append(f"| {name} | " + " | ".join(
            f"{metrics.get(f'recall@10_{b}', float('nan')):.4f} / {metrics.get(f'ndcg@10_{b}', float('nan')):.4f}"
            for b in ("head", "mid", "tail")) + " |")
    return "\n".join(lines) + "\n"
