"""SASRec benchmark on Amazon Beauty (leave-one-out, full-catalogue ranking), with the settings of params.yaml.

    .venv/bin/python benchmarks/sasrec.py                       # ingest + validate with the pipeline, then train
    .venv/bin/python benchmarks/sasrec.py --export-npz beauty.npz --prepare-only
    python3 benchmarks/sasrec.py --npz beauty.npz --device cuda  # e.g. on a GPU machine without the pipeline

The events come from the pipeline's `splits` table (configs/amazon_beauty.yaml), or from an .npz written by
--export-npz (user_index, item_index, split, n_items), so a machine with only torch and numpy can train.
The last line printed is one JSON object: recall@5, ndcg@5, recall@10, ndcg@10, train_seconds, device, and
the popularity baseline, epochs, and the Spearman correlation of embedding norm and train popularity.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sid_models.metrics import popularity_metrics, spearman  # noqa: E402
from sid_models.sasrec import SASRecConfig  # noqa: E402
from sid_models.sequences import LeaveOneOut  # noqa: E402
from sid_models.train_sasrec import TrainConfig, train  # noqa: E402


def events_from_pipeline(data_root: str | None) -> dict[str, np.ndarray]:
    import dagster as dg

    from assets.behavior import SPLIT_EVENTS_SQL
    from orchestration.cli import run_pipeline
    from orchestration.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="sidflow-sasrec-") as home:
        if data_root:
            import os
            os.environ["SIDFLOW_DATA_ROOT"] = data_root
        settings = load_settings(config=ROOT / "configs" / "amazon_beauty.yaml", home=home)
        result = run_pipeline(settings, selection="group:ingest or group:validated",
                              instance=dg.DagsterInstance.ephemeral())
        if not result.success:
            sys.exit("ingest of Amazon Beauty failed")
        with settings.resources()["warehouse"].get_connection() as con:
            events = con.execute(SPLIT_EVENTS_SQL).fetchnumpy()
            n_items = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
    return {"user_index": events["user_index"], "item_index": events["item_index"], "split": events["split"],
            "n_items": np.int64(n_items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", type=Path, help="read the events from this file instead of running the pipeline")
    parser.add_argument("--export-npz", type=Path, help="write the events read from the pipeline to this file")
    parser.add_argument("--prepare-only", action="store_true", help="stop after --export-npz")
    parser.add_argument("--data-root", help="folder holding amazon-beauty/ (default: SIDFLOW_DATA_ROOT or ../shared/data)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--checkpoints", type=Path, help="checkpoint folder (default: none)")
    parser.add_argument("--max-seconds", type=float, default=840,
                        help="training time budget; the best epoch so far is kept (default 840: 14 minutes)")
    args = parser.parse_args()

    if args.npz:
        with np.load(args.npz, allow_pickle=False) as stored:
            events = {k: stored[k] for k in ("user_index", "item_index", "split", "n_items")}
    else:
        events = events_from_pipeline(args.data_root)
    if args.export_npz:
        np.savez(args.export_npz, **events)
    if args.prepare_only:
        return
    n_items = int(events["n_items"])
    data = LeaveOneOut.from_events(events["user_index"], events["item_index"], events["split"], n_items)
    section = (yaml.safe_load((ROOT / "params.yaml").read_text()) or {}).get("sasrec") or {}
    model_config = SASRecConfig(n_items=n_items, **(section.get("model") or {}))
    train_config = TrainConfig(**{**(section.get("train") or {}), "device": args.device, "torch_threads": args.threads,
                                  "max_seconds": args.max_seconds})

    def progress(record: dict) -> None:
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}),
              file=sys.stderr, flush=True)

    result = train(data, model_config, train_config, checkpoint_dir=args.checkpoints, progress=progress)
    train_counts = np.bincount(data.train.items, minlength=n_items + 1)[1:]
    norms = result.model.item_embeddings().norm(dim=1).numpy()
    seen = train_counts > 0
    print(json.dumps({
        **{k: round(v, 5) for k, v in result.test.items()},
        "train_seconds": round(result.train_seconds, 1), "device": result.device,
        "epochs": result.epochs, "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
        "popularity": {k: round(v, 5) for k, v in popularity_metrics(data.train, data.test.target).items()},
        "spearman_norm_popularity": round(spearman(norms[seen], train_counts[seen]), 4),
        "users": int(data.train.n_rows), "items": n_items}))


if __name__ == "__main__":
    main()
