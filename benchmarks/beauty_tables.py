"""The Amazon Beauty SID tables that the downstream benchmarks read, built under their home when missing."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY_CONFIG = ROOT / "configs" / "amazon_beauty.yaml"
SID_TABLES = "group:ingest or group:validated or group:features or group:tokenizer or group:sid_tables"


def ensure_sid_tables(home: Path, tokenizers: Sequence[str]) -> None:
    """Run the pipeline on configs/amazon_beauty.yaml up to the SID tables unless every tokenizer of
    `tokenizers` already has a current version under `home`."""
    if all((home / "artifacts" / "tokenizers" / kind / "current").is_file() for kind in tokenizers):
        return
    import dagster as dg

    from orchestration.cli import run_pipeline
    from orchestration.settings import load_settings

    settings = load_settings(config=BEAUTY_CONFIG, home=home)
    if not run_pipeline(settings, selection=SID_TABLES, instance=dg.DagsterInstance.ephemeral()).success:
        sys.exit("building the Amazon Beauty SID tables failed")
