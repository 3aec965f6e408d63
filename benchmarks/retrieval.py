"""Generative retrieval benchmark on Amazon Beauty: one encoder-decoder per tokenizer (ADC-SID, RQ-VAE,
RQ-KMeans, OPQ) trained on the leave-one-out train split, decoded with trie-constrained beam search over the
full catalogue, plus decoding speed.

    .venv/bin/python benchmarks/retrieval.py                       # builds what is missing under --home
    .venv/bin/python benchmarks/retrieval.py --tokenizers adc_sid --model tiger --device cuda

--model tiger trains TIGER's size (4 + 4 layers, d_model 128, 6 heads of 64, feed-forward 1024; the retrieval
section of configs/amazon_beauty.yaml); --model compact trains params.yaml's smaller default (the only size that
trains in reasonable time on two CPU cores); auto picks tiger when CUDA is available. Test decoding uses
params.yaml's eval_beam (100), so Recall/NDCG@100 are read from the full beam.

The last line printed is one JSON object: per tokenizer recall@5, ndcg@5, recall@10, ndcg@10, recall@50,
recall@100 (and head/tail Recall@10), train_seconds and epochs, and with exclude_history (the Beauty config's
setting) the same model's test figures with the history left in the beam, `history_kept`; `popularity` for
scale; the settings used; and users_per_s_beam20 / users_per_s_beam50: decoding throughput of a TIGER-size
model (seeded initial weights: the cost of a decoding step does not depend on their values) over the RQ-KMeans
trie (4 SID levels: three codes and the collision token), Beauty test histories of 20 items, batch 32, --threads
CPU threads; the median of --repeats batches after a warm-up. The same for ADC-SID's deeper trie (7 levels) is
in `decoding_adc_sid`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.beauty_tables import BEAUTY_CONFIG, ensure_sid_tables  # noqa: E402

TOKENIZERS = ("adc_sid", "rqvae", "rqkmeans", "opq")
TIGER = {"max_history": 20, "d_model": 128, "n_heads": 6, "d_head": 64, "d_ff": 1024, "encoder_layers": 4,
         "decoder_layers": 4, "dropout": 0.1}
REPORTED = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@50", "ndcg@50", "recall@100", "ndcg@100",
            "recall@10_head", "recall@10_tail", "ndcg@10_head", "ndcg@10_tail")


def decoding_speed(item_codes: np.ndarray, codebook_sizes: list[int], histories: torch.Tensor, beam: int,
                   repeats: int, batch: int = 32) -> float:
    """Users/s of trie-constrained beam search with a TIGER-size retriever: median over `repeats` batches."""
    from sid_models.retriever import RetrieverConfig, SidRetriever
    from sid_models.sid_trie import SidTrie
    from sid_models.train_retriever import retrieve

    torch.manual_seed(0)
    model = SidRetriever(RetrieverConfig(codebook_sizes=codebook_sizes, **TIGER)).eval()
    trie = SidTrie.build(item_codes[1:], codebook_sizes)
    codes = torch.from_numpy(item_codes)
    batches = [histories[start:start + batch] for start in range(0, len(histories) - batch + 1, batch)]
    for history in batches[:3]:  # warm-up
        retrieve(model, trie, history, codes, beam)
    seconds = []
    for history in batches[3:3 + repeats]:
        started = time.perf_counter()
        retrieve(model, trie, history, codes, beam)
        seconds.append(time.perf_counter() - started)
    return batch / float(np.median(seconds))


def model_overrides(pairs: list[str], model: dict) -> dict:
    """KEY=VALUE pairs as model fields of the same types as `model`'s."""
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in model or not value:
            raise SystemExit(f"--model-arg {pair!r}: expected KEY=VALUE with KEY one of {sorted(model)}")
        if isinstance(model[key], bool):
            if value.lower() not in ("true", "false"):
                raise SystemExit(f"--model-arg {pair!r}: {key} takes true or false")
            overrides[key] = value.lower() == "true"
        else:
            overrides[key] = type(model[key])(value)
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=ROOT / ".sidflow-bench-beauty",
                        help="SIDFLOW_HOME holding (or receiving) the Beauty SID tables")
    parser.add_argument("--tokenizers", nargs="+", default=list(TOKENIZERS), choices=TOKENIZERS)
    parser.add_argument("--model", choices=("auto", "tiger", "compact"), default="auto",
                        help="retriever size: TIGER's, or params.yaml's compact default (auto: tiger on CUDA)")
    parser.add_argument("--model-arg", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override fields of the chosen size, e.g. d_model=128 d_ff=512 d_head=32 trie_softmax=true")
    parser.add_argument("--device", default="auto", help="training device (default auto: CUDA when there is one)")
    parser.add_argument("--epochs", type=int, help="override the epoch limit of params.yaml")
    parser.add_argument("--unweighted", action="store_true",
                        help="every SID level's loss weight 1 instead of ADC-SID's sid_importance (the ablation)")
    parser.add_argument("--importance-floor", type=float, help="override params.yaml's importance_floor")
    parser.add_argument("--behavior-first", action="store_true",
                        help="generate ADC-SID's behavioral tokens first (behavior_first: true)")
    parser.add_argument("--seed", type=int, help="override the training seed of params.yaml")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), help="override the learning-rate schedule")
    parser.add_argument("--amp", choices=("off", "bf16"),
                        help="override the training precision (bf16: autocast, on the CPU too)")
    parser.add_argument("--exclude-history", action=argparse.BooleanOptionalAction,
                        help="override exclude_history (true in the Beauty config: no user has an item twice); "
                             "when on, the test figures with the history left in are reported too, as `history_kept`")
    parser.add_argument("--patience", type=int,
                        help="override the early-stopping patience (--patience N >= --epochs runs the whole schedule)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed decoding batches per beam (default 30)")
    parser.add_argument("--skip-training", action="store_true", help="decoding speed only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import duckdb
    from dagster_duckdb import DuckDBResource

    from assets.behavior import load_leave_one_out
    from assets.feature_store import catalogue_item_ids
    from assets.retrieval import fit_retrieval
    from assets.sid_features import load_feature_set, popularity_buckets
    from orchestration.settings import load_settings
    from sid_models.devices import resolve_device
    from sid_models.metrics import popularity_metrics
    from sid_models.sequences import evaluation_inputs
    from sid_models.train_retriever import KS, evaluate

    home = args.home.resolve()
    ensure_sid_tables(home, TOKENIZERS)
    settings = load_settings(config=BEAUTY_CONFIG, home=home)
    device = resolve_device(args.device)
    size = args.model if args.model != "auto" else ("tiger" if device.type == "cuda" else "compact")
    model = TIGER if size == "tiger" else load_settings(home=home).retrieval.model.model_dump()  # params.yaml's
    model = {**model, **model_overrides(args.model_arg, model)}
    train_update = {key: value for key, value in (("epochs", args.epochs), ("seed", args.seed),
                                                  ("lr_schedule", args.lr_schedule),
                                                  ("patience", args.patience), ("amp", args.amp),
                                                  ("exclude_history", args.exclude_history)) if value is not None}
    retrieval = settings.retrieval.model_copy(update={
        "model": type(settings.retrieval.model)(**model), "importance_weights": not args.unweighted,
        "behavior_first": args.behavior_first,
        **({"importance_floor": args.importance_floor} if args.importance_floor is not None else {}),
        "train": settings.retrieval.train.model_copy(update=train_update)})
    split, n_items = load_leave_one_out(DuckDBResource(database=str(home / "warehouse.duckdb")))
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        item_ids = catalogue_item_ids(con)
        buckets = popularity_buckets(con, item_ids)
        features = {name: load_feature_set(con, settings.home, name, item_ids, retrieval.importance_weights,
                                           collision_level=True) for name in TOKENIZERS}
    results = {"model": size, "model_config": retrieval.model.model_dump(), "device": str(device),
               "importance_weights": retrieval.importance_weights,
               "importance_floor": retrieval.importance_floor, "behavior_first": retrieval.behavior_first,
               "train": retrieval.train.model_dump(), "eval_beam": retrieval.eval_beam,
               "test_users": len(split.test.target), "items": n_items}
    print(json.dumps(results), file=sys.stderr, flush=True)
    popularity = popularity_metrics(split.train, split.test.target, KS)
    results["popularity"] = {key: round(popularity[key], 5) for key in REPORTED if key in popularity}
    if not args.skip_training:
        for name in args.tokenizers:
            fit = fit_retrieval(split, name, features[name], retrieval, str(device), buckets,
                                lambda line: print(line, file=sys.stderr, flush=True))
            results[name] = {key: round(fit.metrics[key], 5) for key in REPORTED if key in fit.metrics}
            results[name].update(train_seconds=round(fit.train_seconds, 1), epochs=len(fit.history),
                                 codebook_sizes=features[name].codebook_sizes)
            if retrieval.train.exclude_history:  # the same model, its beam free to return history items
                kept = evaluate(fit.model, fit.data.trie(), fit.data, split.test, beam=retrieval.eval_beam)
                results[name]["history_kept"] = {key: round(kept[key], 5) for key in REPORTED if key in kept}
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    histories = evaluation_inputs(split.test.history, np.arange(len(split.test.target)), TIGER["max_history"])
    torch.set_num_threads(args.threads)
    for name, key in (("rqkmeans", ""), ("adc_sid", "decoding_adc_sid")):
        speed = {f"users_per_s_beam{beam}": round(decoding_speed(
            features[name].items.codes, features[name].codebook_sizes, histories, beam, args.repeats), 1)
            for beam in (20, 50)}
        speed_target = results.setdefault(key, {}) if key else results
        speed_target.update(speed, levels=len(features[name].codebook_sizes))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
