"""Day-to-day operation: the landing sensor, the alert sensor, the daily refresh and the weekly retrain.

- `landed_items_sensor`: each new file in the landing folder becomes one partition of `landed_item_batches`
  (one per arriving batch, never one per item) and one run of `sid_refresh`.
- `daily_sid_refresh`: picks up what the sensor missed, and after a retrain gives every landed batch SIDs of
  the new tokenizer version (a batch already processed under the current version is not requested again).
- `weekly_retrain`: the whole asset graph (`sidflow_job`), so the tokenizers are fitted again; a tokenizer that
  changed gets a new version and the SID tables of earlier versions stay in place, queryable by version.
- `data_quality_alerts`: failed checks (WARN, ERROR) and failed runs to the alert sinks (`alerts.py`).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.refresh import landed_item_batches, new_item_sids
from assets.tokenizers import tokenizer_dir
from orchestration.alerts import AlertSinks, new_alerts, webhook_from_env
from orchestration.settings import RunSettings

REFRESH_JOB = "sid_refresh"
# Names a writer is still busy with; write elsewhere and rename into the folder, or use one of these.
UNFINISHED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
INVALID_KEY_PARTS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")  # what Dagster refuses in a key


def landed_files(landing: Path) -> list[str]:
    """File names in the landing folder that are finished batches, sorted."""
    if not landing.is_dir():
        return []
    return sorted(path.name for path in landing.iterdir()
                  if path.is_file() and not path.name.startswith((".", "~"))
                  and not path.name.endswith(UNFINISHED_SUFFIXES)
                  and not any(part in path.name for part in INVALID_KEY_PARTS))


def refresh_job() -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(REFRESH_JOB, selection=[new_item_sids], partitions_def=landed_item_batches,
                               description="SIDs for the items of one landed file, with the frozen tokenizer.")


def landing_sensor(settings: RunSettings, job) -> dg.SensorDefinition:
    landing = settings.refresh.landing_path(settings.home)

    @dg.sensor(name="landed_items_sensor", job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"One partition and one refresh run per new file in {landing}.")
    def landed_items_sensor(context: dg.SensorEvaluationContext):
        known = set(context.instance.get_dynamic_partitions(landed_item_batches.name))
        new = [name for name in landed_files(landing) if name not in known]
        if not new:
            return dg.SkipReason(f"no new file in {landing}")
        return dg.SensorResult(run_requests=[dg.RunRequest(partition_key=name, run_key=name) for name in new],
                               dynamic_partitions_requests=[landed_item_batches.build_add_request(new)])

    return landed_items_sensor


def processed_version(instance: dg.DagsterInstance, key: str) -> str | None:
    """The tokenizer version of the latest successful refresh of partition `key`, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=new_item_sids.key, asset_partitions=[key]), limit=1).records
    if not records:
        return None
    version = records[0].asset_materialization.metadata.get("tokenizer_version")
    return getattr(version, "value", version)


def daily_refresh_schedule(settings: RunSettings, job, cron: str) -> dg.ScheduleDefinition:
    landing = settings.refresh.landing_path(settings.home)
    pointer = tokenizer_dir(settings.home, "adc_sid") / "current"

    @dg.schedule(name="daily_sid_refresh", cron_schedule=cron, job=job,
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Refresh every landed batch without SIDs of the current ADC-SID version.")
    def daily_sid_refresh(context: dg.ScheduleEvaluationContext):
        if not pointer.is_file():
            return dg.SkipReason(f"no fitted ADC-SID tokenizer yet ({pointer})")
        version = pointer.read_text().strip()
        files = landed_files(landing)
        known = set(context.instance.get_dynamic_partitions(landed_item_batches.name))
        missing = [name for name in files if name not in known]
        if missing:
            context.instance.add_dynamic_partitions(landed_item_batches.name, missing)
        due = [name for name in files if processed_version(context.instance, name) != version]
        if not due:
            return dg.SkipReason(f"every landed batch has SIDs of {version}")
        # One request per batch and version: a batch that was rejected is not retried every day.
        return [dg.RunRequest(partition_key=name, run_key=f"{name}@{version}") for name in due]

    return daily_sid_refresh


def weekly_retrain_schedule(main_job, cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(name="weekly_retrain", cron_schedule=cron, job=main_job,
                                 default_status=dg.DefaultScheduleStatus.RUNNING,
                                 description="Materialise the whole graph: tokenizers fitted again, new versions "
                                             "beside the old ones.")


def alert_sensor(settings: RunSettings) -> dg.SensorDefinition:
    alerts_config = settings.alerts

    @dg.sensor(name="data_quality_alerts", minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Failed checks and runs to {alerts_config.log_path(settings.home.home_path)} "
                           f"and the webhook in ${alerts_config.webhook_env} when set.")
    def data_quality_alerts(context: dg.SensorEvaluationContext):
        sinks = AlertSinks(alerts_config.log_path(settings.home.home_path), webhook_from_env(alerts_config.webhook_env))
        alerts, last = new_alerts(context.instance, int(context.cursor) if context.cursor else None)
        for alert in alerts:
            sinks.send(alert, context.log)
        if last is not None:
            context.update_cursor(str(last))
        return dg.SkipReason(f"sent {len(alerts)} alert(s)" if alerts else "nothing failed since the last tick")

    return data_quality_alerts
