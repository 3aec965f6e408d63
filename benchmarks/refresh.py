"""Refresh benchmark: SIDs for 1,000 newly landed items in a catalogue of 1M (and 2M) items, through the
`sid_refresh` job in this process (process start and the catalogue's setup excluded).

    .venv/bin/python benchmarks/refresh.py                      # 1M and 2M items, 1,000 new items per batch
    .venv/bin/python benchmarks/refresh.py --catalogue 100000 --new-items 500

Setup, not timed: the pipeline up to the SID tables on a small synthetic catalogue (a trained ADC-SID), then
`sid_lookup` and `sid_importance` padded to --catalogue items with SIDs the tokenizer gives to synthetic vectors
(collision tokens as the pipeline assigns them). Timed: --repeats batches of --new-items synthetic arrivals
(item fields plus text and visual vectors, Parquet), each one refresh run: landing, GX checks, encoding,
collision tokens against the whole version, the insert. Then the same at twice the catalogue.

The last line printed is one JSON object: catalogue_items, new_items, seconds (median run at --catalogue),
asset_seconds (inside the asset), and the same at twice the catalogue with the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.feature_store import features_dir, read_matrix  # noqa: E402
from assets.sid_tables import importance_rows, lookup_rows  # noqa: E402
from assets.sources.landing import synthetic_params  # noqa: E402
from assets.sources.synthetic_arrivals import arrivals, centroids  # noqa: E402
from assets.tokenizers import load_current  # noqa: E402
from orchestration.build import build_definitions  # noqa: E402
from orchestration.cli import run_pipeline  # noqa: E402
from orchestration.operations import REFRESH_JOB  # noqa: E402
from orchestration.settings import RunSettings, load_settings  # noqa: E402

ADC_SID_TABLES = ("group:ingest or group:validated or group:features or key:sid_tokenizer or key:sid_lookup "
                  "or key:sid_importance")
SMALL = {"synthetic": {"users": 2000, "items": 2000, "events": 30000, "clusters": 20, "seed": 0},
         "sasrec": {"train": {"epochs": 3}},
         "tokenizers": {"adc_sid": {"train": {"epochs": 10}}}}
PAD_CHUNK = 250_000


def build_small(root: Path) -> RunSettings:
    config = root / "run.yaml"
    config.write_text(json.dumps(SMALL))  # JSON is YAML
    settings = load_settings(config=config, home=root / "home")
    if (root / "home" / "artifacts" / "tokenizers" / "adc_sid" / "current").is_file():
        return settings  # built by an earlier run in this --home
    if not run_pipeline(settings, ADC_SID_TABLES, instance=dg.DagsterInstance.ephemeral()).success:
        sys.exit("building the small catalogue's SID tables failed")
    return settings


def pad_catalogue(settings: RunSettings, target: int) -> None:
    """Add SIDs for made-up items `p<index>` until the version holds `target` items."""
    version, tokenizer = load_current(settings.home, "adc_sid")
    params = synthetic_params(settings.source)
    behavior = np.asarray(read_matrix(features_dir(settings.home.home_path), "behavior").vectors)
    rng = np.random.default_rng(0)
    with duckdb.connect(str(settings.home.warehouse_path)) as con:
        [(have,)] = con.execute("SELECT count(*) FROM sid_lookup WHERE tokenizer_version = ?", [version]).fetchall()
        start = have
        while have < target:
            n = min(PAD_CHUNK, target - have)
            cluster = rng.integers(0, params.clusters, n)
            features = {m: centroids(params, m)[cluster] + 0.8 * rng.standard_normal((n, params.content_dim),
                                                                                      dtype=np.float32)
                        for m in ("text", "visual")}
            features["behavior"] = (behavior[rng.integers(0, len(behavior), n)]
                                    + 0.1 * rng.standard_normal((n, behavior.shape[1]), dtype=np.float32))
            ids = [f"p{i:09d}" for i in range(have - start, have - start + n)]
            codes = tokenizer.encode(features)
            rows = lookup_rows(ids, version, codes, tokenizer.token_names)
            # Collision tokens continue the groups the version already holds, as a refresh would.
            con.register("pad", rows)
            con.execute("""
                INSERT INTO sid_lookup BY NAME
                SELECT p.* REPLACE (p.collision + coalesce(t.taken, 0) AS collision)
                FROM pad p LEFT JOIN (SELECT sid, max(collision) + 1 AS taken FROM sid_lookup
                                      WHERE tokenizer_version = ? GROUP BY sid) t ON p.sid = t.sid""", [version])
            con.unregister("pad")
            con.register("pad_importance", importance_rows(ids, version, tokenizer, tokenizer.importance(features)))
            con.execute("INSERT INTO sid_importance BY NAME SELECT * FROM pad_importance")
            con.unregister("pad_importance")
            have += n
            print(f"  catalogue padded to {have:,} items", flush=True)


def timed_refreshes(settings: RunSettings, new_items: int, repeats: int, first_index: int) -> list[dict]:
    landing = settings.refresh.landing_path(settings.home)
    landing.mkdir(parents=True, exist_ok=True)
    job = build_definitions(settings).resolve_job_def(REFRESH_JOB)
    instance = dg.DagsterInstance.ephemeral()
    results = []
    for repeat in range(repeats):
        name = f"bench-{first_index + repeat * new_items}.parquet"
        pq.write_table(arrivals(synthetic_params(settings.source), new_items, first_index + repeat * new_items,
                                batch=repeat), landing / name)
        instance.add_dynamic_partitions("landed_item_batches", [name])
        started = time.perf_counter()
        result = job.execute_in_process(partition_key=name, instance=instance, raise_on_error=False)
        seconds = time.perf_counter() - started
        if not result.success:
            sys.exit(f"refresh of {name} failed")
        metadata = result.asset_materializations_for_node("new_item_sids")[0].metadata
        assert metadata["new_items"].value == new_items
        results.append({"seconds": seconds, "asset_seconds": metadata["seconds"].value})
        print(f"  {name}: {seconds:.2f} s ({metadata['seconds'].value:.2f} s in the asset)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogue", type=int, default=1_000_000, help="items in the catalogue (default 1M)")
    parser.add_argument("--new-items", type=int, default=1_000, help="items per landed batch (default 1,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per catalogue size (default 3)")
    parser.add_argument("--home", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.home or Path(tempfile.mkdtemp(prefix="sidflow-refresh-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"refresh benchmark in {root}", flush=True)
    settings = build_small(root)
    figures = {}
    for size in (args.catalogue, 2 * args.catalogue):
        pad_catalogue(settings, size)
        with duckdb.connect(str(settings.home.warehouse_path), read_only=True) as con:
            [(landed,)] = con.execute("SELECT count(*) FROM sid_lookup WHERE origin = 'incremental'").fetchall()
        runs = timed_refreshes(settings, args.new_items, args.repeats, first_index=5_000_000 + landed)
        figures[size] = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "asset_seconds")}
    small, large = figures[args.catalogue], figures[2 * args.catalogue]
    print(json.dumps({"catalogue_items": args.catalogue, "new_items": args.new_items,
                      "seconds": round(small["seconds"], 3), "asset_seconds": round(small["asset_seconds"], 3),
                      "catalogue_items_doubled": 2 * args.catalogue,
                      "seconds_doubled": round(large["seconds"], 3),
                      "asset_seconds_doubled": round(large["asset_seconds"], 3),
                      "doubling_ratio": round(large["seconds"] / small["seconds"], 3), "repeats": args.repeats}))


if __name__ == "__main__":
    main()
