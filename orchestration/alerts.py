"""Alerts on data quality: failed asset checks (WARN and ERROR) and failed runs, sent to the configured sinks.

Sinks: a JSON-lines log (default `$SIDFLOW_HOME/alerts.jsonl`, one object per alert) and, when the environment
variable named by `alerts.webhook_env` (default SIDFLOW_ALERT_WEBHOOK_URL) holds an http(s) URL, a POST with a
Slack-compatible payload (`text` plus `blocks`). A webhook that fails is logged and retried on no later tick:
the log line is the record that always exists.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pydantic

SEVERITIES = ("WARN", "ERROR")
COUNT_KEYS = ("rows", "failing_rows", "rejected_rows")


class AlertSettings(pydantic.BaseModel, extra="forbid"):
    """`alerts` in params.yaml: the JSON-lines log (relative to SIDFLOW_HOME) and the name of the environment
    variable that may hold the webhook URL (a secret, so never a file setting)."""

    log_file: str = "alerts.jsonl"
    webhook_env: str = "SIDFLOW_ALERT_WEBHOOK_URL"

    def log_path(self, home_path: Path) -> Path:
        path = Path(self.log_file).expanduser()
        return path if path.is_absolute() else home_path / path


@dataclass(frozen=True)
class Alert:
    severity: str  # WARN | ERROR
    kind: str  # asset_check | run_failure
    asset: str
    check: str | None
    counts: dict
    description: str
    run_id: str
    job: str
    partition: str | None = None

    def record(self) -> dict:
        return {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "severity": self.severity,
                "kind": self.kind, "asset": self.asset, "check": self.check, "counts": self.counts,
                "description": self.description, "run_id": self.run_id, "job": self.job, "partition": self.partition}

    def slack_payload(self) -> dict:
        where = f"{self.asset}.{self.check}" if self.check else self.asset
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items()) or "no counts"
        text = f"[sidflow {self.severity}] {where}: {self.description} ({counts}; run {self.run_id[:8]})"
        fields = [("Asset", self.asset), ("Check", self.check or "-"), ("Severity", self.severity),
                  ("Counts", counts), ("Run", f"{self.run_id} ({self.job})")]
        if self.partition:
            fields.append(("Partition", self.partition))
        return {"text": text, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]}]}


@dataclass(frozen=True)
class AlertSinks:
    log_path: Path
    webhook_url: str | None = None
    timeout_seconds: float = 10.0

    def send(self, alert: Alert, log=None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(alert.record(), default=str) + "\n")
        if self.webhook_url:
            request = urllib.request.Request(self.webhook_url, data=json.dumps(alert.slack_payload()).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                    response.read()
            except (urllib.error.URLError, OSError) as err:
                if log:
                    log.warning(f"alert webhook failed ({err}); the alert is in {self.log_path}")


def webhook_from_env(variable: str) -> str | None:
    url = os.environ.get(variable, "").strip()
    if url and not url.startswith(("http://", "https://")):
        raise ValueError(f"{variable}={url!r}: the alert webhook must be an http:// or https:// URL")
    return url or None


def _plain(value):
    return getattr(value, "value", value)


def _counts(metadata: dict) -> dict:
    return {key: _plain(metadata[key]) for key in COUNT_KEYS if key in metadata}


def check_alert(record: dg.EventLogRecord, instance: dg.DagsterInstance) -> Alert | None:
    evaluation = record.event_log_entry.dagster_event.event_specific_data
    if evaluation.passed or evaluation.severity.value not in SEVERITIES:
        return None
    run = instance.get_run_by_id(record.event_log_entry.run_id)
    return Alert(evaluation.severity.value, "asset_check", evaluation.asset_key.to_user_string(),
                 evaluation.check_name, _counts(evaluation.metadata), evaluation.description or "check failed",
                 record.event_log_entry.run_id, run.job_name if run else "", run.tags.get("dagster/partition") if run else None)


def run_failure_alert(record: dg.EventLogRecord, instance: dg.DagsterInstance) -> Alert:
    entry = record.event_log_entry
    failure = entry.dagster_event.event_specific_data
    step = getattr(failure, "first_step_failure_event", None)
    run = instance.get_run_by_id(entry.run_id)
    asset, check, counts, description = "", None, {}, (failure.error.message.strip() if failure and failure.error
                                                       else entry.message or "run failed")
    if step is not None:
        asset = step.step_key or ""
        user = step.step_failure_data.user_failure_data
        if user is not None:
            check = _plain(user.metadata.get("check")) if user.metadata.get("check") else None
            counts = _counts(user.metadata)
            description = user.description or description
        else:
            description = step.step_failure_data.error.message.strip() if step.step_failure_data.error else description
    return Alert("ERROR", "run_failure", asset, check, counts, description, entry.run_id,
                 run.job_name if run else "", run.tags.get("dagster/partition") if run else None)


def new_alerts(instance: dg.DagsterInstance, after: int | None, limit: int = 500) -> tuple[list[Alert], int | None]:
    """Alerts for the failed checks and failed runs recorded after storage id `after` (all when None), and
    the highest storage id read."""
    records, last = [], None
    for event_type in (dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.RUN_FAILURE):
        found = instance.get_event_records(dg.EventRecordsFilter(event_type, after_cursor=after), limit=limit,
                                           ascending=True)
        records += found
        if len(found) == limit:  # more of this type waits: read no further than its last record
            last = found[-1].storage_id if last is None else min(last, found[-1].storage_id)
    if last is None:
        last = max((r.storage_id for r in records), default=after)
    alerts = []
    for record in sorted(records, key=lambda r: r.storage_id):
        if record.storage_id > last:
            break
        if record.event_log_entry.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE:
            alerts.append(run_failure_alert(record, instance))
        else:
            alert = check_alert(record, instance)
            if alert:
                alerts.append(alert)
    return alerts, last
