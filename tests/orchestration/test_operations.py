"""Sensors and schedules: one partition per landed file, the daily refresh after a retrain (the previous
version's SIDs stay queryable), and alerts for a corrupt batch in the JSON-lines log and on a webhook."""

from __future__ import annotations

import http.server
import json
import threading

import dagster as dg
import pytest
import yaml

from orchestration.build import build_definitions
from orchestration.settings import load_settings
from tests.assets.test_refresh import BATCHES, land_arrivals, landing, refresh
from tests.assets.test_sid_tables import FAST_TOKENIZERS
from tests.helpers import query, run, write_config


def sensor(settings, name: str) -> dg.SensorDefinition:
    return build_definitions(settings).resolve_sensor_def(name)


def test_sensor_makes_one_partition_per_landed_file(sid_home):
    settings, instance = sid_home, dg.DagsterInstance.ephemeral()
    land_arrivals(settings, "a.parquet", 5)
    land_arrivals(settings, "b.jsonl", 3, first_index=1500)
    (landing(settings) / "c.parquet.tmp").write_text("still being written")
    (landing(settings) / ".hidden.csv").write_text("item_id\nx\n")
    landed_items_sensor = sensor(settings, "landed_items_sensor")

    result = landed_items_sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_key for r in result.run_requests] == ["a.parquet", "b.jsonl"]
    [add] = result.dynamic_partitions_requests
    assert (add.partitions_def_name, list(add.partition_keys)) == (BATCHES, ["a.parquet", "b.jsonl"])

    instance.add_dynamic_partitions(BATCHES, list(add.partition_keys))
    again = landed_items_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(again, dg.SkipReason) and "no new file" in again.skip_message


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:  # schedule contexts need an instance with a reference
        yield test_instance


def test_daily_refresh_after_a_retrain_keeps_the_previous_version(sid_home, tmp_path, instance):
    settings = sid_home
    land_arrivals(settings, "a.parquet", 5)
    assert refresh(settings, instance, "a.parquet").success
    [(old,)] = query(settings, "SELECT DISTINCT tokenizer_version FROM sid_lookup")
    old_rows = query(settings, "SELECT * FROM sid_lookup ORDER BY item_id")
    daily = build_definitions(settings).resolve_schedule_def("daily_sid_refresh")
    context = dg.build_schedule_context(instance=instance)
    assert isinstance(daily(context), dg.SkipReason)  # every batch has SIDs of the current version

    # What the weekly retrain does to the tokenizer when its inputs or settings changed: a new version.
    adc_sid = FAST_TOKENIZERS["adc_sid"]
    retrained = {**FAST_TOKENIZERS, "adc_sid": {**adc_sid, "train": {**adc_sid["train"], "seed": 1}}}
    (tmp_path / "retrain").mkdir()
    config = write_config(tmp_path / "retrain", **{**_config(tmp_path), "tokenizers": retrained})
    settings = load_settings(config=config, home=settings.home.home_path)
    assert run(settings, "key:sid_tokenizer or key:sid_lookup or key:sid_importance").success
    versions = [v for (v,) in query(settings, "SELECT DISTINCT tokenizer_version FROM sid_lookup ORDER BY 1")]
    assert len(versions) == 2 and old in versions
    assert query(settings, "SELECT * FROM sid_lookup WHERE tokenizer_version = ? ORDER BY item_id", [old]) == old_rows

    landed = landing(settings) / "b.parquet"
    land_arrivals(settings, landed.name, 2, first_index=1500)  # missed by the sensor: no partition yet
    requests = build_definitions(settings).resolve_schedule_def("daily_sid_refresh")(
        dg.build_schedule_context(instance=instance))
    new = next(v for v in versions if v != old)
    assert sorted((r.partition_key, r.run_key) for r in requests) == [("a.parquet", f"a.parquet@{new}"),
                                                                      ("b.parquet", f"b.parquet@{new}")]
    assert set(instance.get_dynamic_partitions(BATCHES)) == {"a.parquet", "b.parquet"}


def _config(root) -> dict:
    return yaml.safe_load((root / "run.yaml").read_text())


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (the http.server name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook(monkeypatch):
    _Webhook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SIDFLOW_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield _Webhook.received
    server.shutdown()
    server.server_close()


def test_a_corrupt_batch_raises_an_alert(sid_home, webhook):
    settings, instance = sid_home, dg.DagsterInstance.ephemeral()
    (landing(settings) / "broken.csv").write_text("item_id,title\n,a\n,b\n,c\ni0999999,d\n")
    result = refresh(settings, instance, "broken.csv")
    assert not result.success
    data_quality_alerts = sensor(settings, "data_quality_alerts")
    context = dg.build_sensor_context(instance=instance)
    data_quality_alerts(context)

    log = settings.alerts.log_path(settings.home.home_path)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    check = next(r for r in records if r["kind"] == "asset_check")
    assert (check["asset"], check["check"], check["severity"]) == ("new_item_sids", "batch_hard_rules", "ERROR")
    assert check["counts"] == {"rows": 4, "failing_rows": 3, "rejected_rows": 3}
    assert check["run_id"] == result.run_id and check["partition"] == "broken.csv"
    failure = next(r for r in records if r["kind"] == "run_failure")
    assert (failure["asset"], failure["check"], failure["run_id"]) == ("new_item_sids", "batch_hard_rules",
                                                                        result.run_id)
    assert len(webhook) == len(records) == 2
    payload = webhook[0]
    assert "new_item_sids.batch_hard_rules" in payload["text"] and result.run_id[:8] in payload["text"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in payload["blocks"][1]["fields"]}
    assert fields["*Severity*"] == "ERROR" and "failing_rows 3" in fields["*Counts*"]

    # The cursor moved past them: the next tick sends nothing.
    data_quality_alerts(dg.build_sensor_context(instance=instance, cursor=context.cursor))
    assert len(log.read_text().splitlines()) == 2 and len(webhook) == 2
