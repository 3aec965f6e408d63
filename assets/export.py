"""Group `export`: the current ranker as one ONNX file with a dynamic batch axis, for serving with onnxruntime
(`sid_models.ranking_scorer.RankingScorer` scores (user, item) pairs from it and the SID tables).

`artifacts/export/<ranker_version>/` holds `ranking_model.onnx` and a copy of the ranker's `vocabulary.npz`, all
that the scorer needs besides the SID tables; `artifacts/export/current` names the latest. The export has a
directory of its own, apart from `artifacts/ranking/`, so that each asset group owns its outputs (one DVC stage
per group: a stage may not write into another stage's outputs).

The blocking check `ranking_model_onnx_parity` fails with ERROR when onnxruntime's probabilities differ from
PyTorch's by more than 1e-4 on the held-out test rows, or when the graph has a Loop node (a slow path).
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import torch

from assets.ranking import current_ranker
from assets.resources import SidflowHome
from sid_models.ranking import PPNetRanker, RankerConfig
from sid_models.ranking_data import RANKER_INPUTS
from sid_models.ranking_export import export_ranker, op_types, parity
from sid_models.train_ranking import RankerInputs

GROUP = "export"
PARITY_TOLERANCE = 1e-4
PARITY_CHECK = "ranking_model_onnx_parity"


def export_dir(home: SidflowHome) -> Path:
    return home.home_path / "artifacts" / "export"


def load_ranker(path) -> PPNetRanker:
    stored = torch.load(path, map_location="cpu", weights_only=True)
    model = PPNetRanker(RankerConfig(**stored["config"]))
    model.load_state_dict(stored["state"])
    return model.eval()


@dg.asset(group_name=GROUP, deps=["ranking_model"], kinds={"onnx"},
          check_specs=[dg.AssetCheckSpec(PARITY_CHECK, asset="ranking_model_onnx", blocking=True,
                                         description="onnxruntime matches PyTorch within 1e-4 on held-out rows; "
                                                     "no Loop node")])
def ranking_model_onnx(context: dg.AssetExecutionContext, home: SidflowHome) -> dg.MaterializeResult:
    """`artifacts/export/<ranker_version>/ranking_model.onnx` (with the ranker's `vocabulary.npz` beside it):
    inputs user_index, item_index, sid_codes, sid_weights (batch axis dynamic), output the click probability;
    weights inside the file."""
    version, directory = current_ranker(home)
    target = export_dir(home) / version
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(directory / "vocabulary.npz", target / "vocabulary.npz")
    model = load_ranker(directory / "ranker.pt")
    with np.load(directory / "holdout.npz", allow_pickle=False) as stored:
        holdout = RankerInputs(*(torch.as_tensor(stored[name]) for name in RANKER_INPUTS))
    summary = json.loads((directory / "metrics.json").read_text())
    carried = ("feature_set", "features", "tokenizer_version", "token_names", "codebook_sizes", "history_length",
               "importance_weights")  # what the scorer reads back
    metadata = {"ranker_version": version, **{key: summary[key] for key in carried if summary.get(key) is not None}}
    path = export_ranker(model, target / "ranking_model.onnx", holdout, metadata)
    worst = parity(path, model, holdout)
    ops = op_types(path)
    passed = worst <= PARITY_TOLERANCE and "Loop" not in ops
    (export_dir(home) / "current").write_text(version)
    context.log.info(f"ranking_model_onnx: {path.stat().st_size / 1e6:.2f} MB, max |onnx - torch| {worst:.2e} "
                     f"over {len(holdout)} rows")
    return dg.MaterializeResult(
        metadata={"summary": f"{version}: max |onnx - torch| {worst:.1e} on {len(holdout)} rows",
                  "ranker_version": version, "path": dg.MetadataValue.path(str(path)),
                  "max_abs_diff": worst, "parity_rows": len(holdout), "operators": sorted(ops),
                  "size_mb": round(path.stat().st_size / 1e6, 3)},
        check_results=[dg.AssetCheckResult(
            check_name=PARITY_CHECK, passed=passed, severity=dg.AssetCheckSeverity.ERROR,
            description=f"max |onnx - torch| = {worst:.2e} (limit {PARITY_TOLERANCE:g})"
                        + ("; the graph has a Loop node" if "Loop" in ops else ""),
            metadata={"max_abs_diff": worst, "rows": len(holdout)})])
