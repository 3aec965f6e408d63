"""Builds the Definitions from run settings (the CLI and tests build their own; the UI loads `definitions`)."""

from __future__ import annotations

import dagster as dg

from assets import ALL_ASSETS, ALL_CHECKS, REFRESH_GROUP
from orchestration import operations
from orchestration.settings import RunSettings

MAIN_JOB = "sidflow_job"
# Every asset but the refresh, whose partitions (landed batches) the pipeline's assets do not have.
PIPELINE = dg.AssetSelection.all() - dg.AssetSelection.groups(REFRESH_GROUP)


def build_definitions(settings: RunSettings, extra_jobs: list | None = None) -> dg.Definitions:
    main_job = dg.define_asset_job(MAIN_JOB, selection=PIPELINE,
                                   description="Materialise the whole asset graph with its checks.")
    refresh_job = operations.refresh_job()
    # The in-process executor runs steps one after another: DuckDB allows one writer per database file,
    # and the `sidflow_warehouse` pool (dagster.yaml) keeps separate runs from overlapping too.
    return dg.Definitions(
        assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[main_job, refresh_job, *(extra_jobs or [])],
        sensors=[operations.landing_sensor(settings, refresh_job), operations.alert_sensor(settings)],
        schedules=[operations.daily_refresh_schedule(settings, refresh_job, settings.schedules.daily_refresh),
                   operations.weekly_retrain_schedule(main_job, settings.schedules.weekly_retrain)],
        resources=settings.resources(), executor=dg.in_process_executor)
