"""Ingest benchmark: land N synthetic events (and their catalogue) into the validated DuckDB tables with
every data check, through Dagster in this process, and report throughput and peak memory.

    .venv/bin/python benchmarks/ingest.py --events 10000000

The last line printed is one JSON object: events, items, users, seconds, events_per_s, peak_rss_mb, and the
seconds of each step (landing, quarantine, GX checks, stats, splits) from the run's own step events.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.cli import run_pipeline, summarise  # noqa: E402
from orchestration.settings import load_settings  # noqa: E402


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    starts, seconds = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            seconds[event.step_key] = round(record.timestamp - starts[event.step_key], 2)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="synthetic events to load (default 10M)")
    parser.add_argument("--events-per-user", type=int, default=20, help="mean events per user (default 20)")
    parser.add_argument("--events-per-item", type=int, default=100, help="mean events per item (default 100)")
    parser.add_argument("--home", help="SIDFLOW_HOME for the run (default: a temporary directory)")
    args = parser.parse_args()

    synthetic = {"events": args.events, "users": max(1, args.events // args.events_per_user),
                 "items": max(10, args.events // args.events_per_item), "seed": 0}
    with tempfile.TemporaryDirectory(prefix="sidflow-bench-") as tmp:
        home = Path(args.home or tmp)
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump({"synthetic": synthetic}))
        settings = load_settings(config=config, home=home)
        instance = dg.DagsterInstance.ephemeral()
        start = time.perf_counter()
        result = run_pipeline(settings, selection="group:ingest or group:validated", instance=instance)
        seconds = time.perf_counter() - start
        text, healthy = summarise(result)
        print(text, file=sys.stderr)
        if not healthy:
            sys.exit("benchmark run failed")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events": args.events, "items": synthetic["items"], "users": synthetic["users"],
                      "seconds": round(seconds, 2), "events_per_s": round(args.events / seconds),
                      "peak_rss_mb": round(peak_rss_mb), "steps": step_seconds(instance, result.run_id)}))


if __name__ == "__main__":
    main()
