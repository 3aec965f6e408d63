"""Tokenizer benchmark on Amazon Beauty: fit ADC-SID and the baselines (RQ-VAE, RQ-KMeans, OPQ) with the
settings of params.yaml on the same item features, and report the quantization metrics of each.

    .venv/bin/python benchmarks/tokenizers.py                      # features from the pipeline (SASRec included)
    .venv/bin/python benchmarks/tokenizers.py --home /tmp/beauty    # reuse a home whose features exist
    .venv/bin/python benchmarks/tokenizers.py --export-npz f.npz    # then, on a GPU machine with torch only:
    python3 benchmarks/tokenizers.py --npz f.npz --device cuda      # also checks GPU codes == CPU codes
    .venv/bin/python benchmarks/tokenizers.py --ablations          # ADC-SID with each part switched off

The features are those of the pipeline on configs/amazon_beauty.yaml (title/categories text, S3-Rec attributes,
SASRec behavior embeddings trained on the train split); they are built under --home when missing.
The last line printed is one JSON object: per tokenizer, recon_loss, entropy, utilization, collision_rate,
max_collision_group, fit_seconds, encode_items_per_s (median of 3 encodes of the whole catalogue), device;
with --ablations, {"ablations": {variant: the same metrics}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sid_models.registry import build_tokenizer  # noqa: E402
from sid_models.sid_metrics import quantization_metrics  # noqa: E402

KINDS = ("adc_sid", "rqvae", "rqkmeans", "opq")
FEATURES = "group:ingest or group:validated or group:features"
# ADC-SID with one part switched off at a time: the paper's Table 3 rows, plus the usage-entropy term (ours).
ABLATIONS = {
    "adc_sid": {},
    "w/o alignment strength controller": {"adaptive_alignment": False},
    "w/o behavior-content contrastive learning": {"use_alignment": False},
    "w/o dynamic behavioral weighting gate": {"use_behavior_gate": False},
    "w/o sparsely-activated training": {"use_load_balancing": False},
    "w/o usage entropy": {"use_usage_entropy": False},
}


def ensure_features(home: Path) -> None:
    from assets.feature_store import CONTENT_MANIFEST, features_dir

    if (features_dir(home) / CONTENT_MANIFEST).is_file() and (features_dir(home) / "behavior.npy").is_file():
        return
    import dagster as dg

    from orchestration.cli import run_pipeline
    from orchestration.settings import load_settings

    settings = load_settings(config=ROOT / "configs" / "amazon_beauty.yaml", home=home)
    if not run_pipeline(settings, selection=FEATURES, instance=dg.DagsterInstance.ephemeral()).success:
        sys.exit("building the Amazon Beauty features failed")


def load_features(home: Path):
    import duckdb

    from assets.feature_store import catalogue_item_ids, tokenizer_features

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        item_ids = catalogue_item_ids(con)
    return tokenizer_features(home, item_ids)[0]


def measure(tokenizer, features: dict) -> dict:
    """Fit, then the quantization metrics of the CPU encode and its median speed over 3 encodes; on CUDA also the
    share of items whose GPU encode equals the CPU encode of the same parameters."""
    report = tokenizer.fit(features)
    agreement = None
    if report.device.startswith("cuda") and hasattr(tokenizer, "to"):
        on_gpu = tokenizer.to(report.device).encode(features)
        tokenizer.to("cpu")  # the same checkpoint, encoded on the CPU as the SID tables are
        agreement = float((tokenizer.encode(features) == on_gpu).all(axis=1).mean())
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        codes = tokenizer.encode(features)
        seconds.append(time.perf_counter() - start)
    metrics = quantization_metrics(codes, tokenizer.codebook_sizes)
    return {
        "recon_loss": round(tokenizer.reconstruction_loss(features), 5), "entropy": round(metrics["entropy"], 4),
        "entropy_per_codebook": [round(e, 4) for e in metrics["entropy_per_codebook"]],
        "utilization": round(metrics["utilization"], 4), "collision_rate": round(metrics["collision_rate"], 4),
        "max_collision_group": int(metrics["max_collision_group"]), "fit_seconds": round(report.seconds, 1),
        "encode_items_per_s": round(len(codes) / statistics.median(seconds)), "device": report.device,
        "token_names": tokenizer.token_names,
        **({"gpu_cpu_sid_agreement": agreement} if agreement is not None else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / ".sidflow-bench-beauty",
                        help="SIDFLOW_HOME holding (or receiving) the Beauty features")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--device", default="auto", help="training device: auto | cpu | cuda (encoding: CPU)")
    parser.add_argument("--npz", type=Path, help="read the features (one array per modality) from this file")
    parser.add_argument("--export-npz", type=Path, help="write the features to this file and stop")
    parser.add_argument("--ablations", action="store_true",
                        help="fit ADC-SID once per ablation switch instead of the tokenizer kinds")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.npz:
        with np.load(args.npz, allow_pickle=False) as stored:
            features = {name: stored[name] for name in stored.files}
    else:
        home = args.home.resolve()
        ensure_features(home)
        features = load_features(home)
    if args.export_npz:
        np.savez(args.export_npz, **features)
        return
    print(json.dumps({"items": len(next(iter(features.values()))),
                      "modalities": {k: v.shape[1] for k, v in features.items()}}), file=sys.stderr)
    settings = (yaml.safe_load((ROOT / "params.yaml").read_text()) or {}).get("tokenizers") or {}
    adc = settings.get("adc_sid") or {}
    runs = ({variant: ("adc_sid", {**adc, "model": {**(adc.get("model") or {}), **switches}})
             for variant, switches in ABLATIONS.items()} if args.ablations
            else {kind: (kind, settings.get(kind) or {}) for kind in args.kinds})
    results = {}
    for name, (kind, kind_settings) in runs.items():
        results[name] = measure(build_tokenizer(kind, kind_settings, device=args.device), features)
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    print(json.dumps({"ablations": results} if args.ablations else results))


if __name__ == "__main__":
    main()
