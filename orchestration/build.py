"""Builds the Definitions from run settings (the CLI and tests build their own; the UI loads `definitions`)."""

from __future__ import annotations

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS
from orchestration.settings import RunSettings

MAIN_JOB = "sidflow_job"


def build_definitions(settings: RunSettings, extra_jobs: list | None = None) -> dg.Definitions:
    main_job = dg.define_asset_job(MAIN_JOB, selection=dg.AssetSelection.all(),
                                   description="Materialise the whole asset graph with its checks.")
    # The in-process executor runs steps one after another: DuckDB allows one writer per database file,
    # and the `sidflow_warehouse` pool (dagster.yaml) keeps separate runs from overlapping too.
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[main_job, *(extra_jobs or [])],
                          resources=settings.resources(), executor=dg.in_process_executor)
