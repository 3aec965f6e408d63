"""The `ingest` and `validated` groups materialised through Dagster: table contents, check results, reruns,
and a bad file that trips the blocking check so that downstream assets are skipped."""

from __future__ import annotations

import dagster as dg

from orchestration.cli import not_materialised
from tests.helpers import BLOCKED_BY_INTERACTIONS, check_results, materialised, query, run

VALIDATED = {"raw_items", "raw_interactions", "items", "rejected_items", "interactions", "rejected_interactions",
             "item_stats", "splits"}
TABLES = sorted(VALIDATED)


def table_digests(settings) -> dict[str, str]:
    """Fingerprint of every row of each table (a table is a set of rows: storage order is not compared)."""
    return {t: query(settings, f"SELECT md5(string_agg(x::VARCHAR, '|' ORDER BY x::VARCHAR)) FROM {t} x")[0][0]
            for t in TABLES}


def test_synthetic_ingest_and_validated(settings_for):
    settings = settings_for()
    result = run(settings, "group:ingest or group:validated")
    assert result.success and materialised(result) == VALIDATED
    checks = check_results(result)
    assert set(checks) == {"items.items_hard_rules", "items.items_drift", "interactions.interactions_hard_rules",
                           "interactions.interactions_drift"}
    assert all(c.passed for c in checks.values())
    assert checks["interactions.interactions_hard_rules"].severity == dg.AssetCheckSeverity.ERROR

    (raw, valid, rejected), = query(settings, """SELECT (SELECT count(*) FROM raw_interactions),
        (SELECT count(*) FROM interactions), (SELECT count(*) FROM rejected_interactions)""")
    assert raw == valid == 3000 and rejected == 0
    assert query(settings, "SELECT count(*), count(DISTINCT item_id) FROM items") == [(200, 200)]
    # item_stats: every item, ranks 1..n, a quarter head and a quarter tail, head far more popular than tail.
    stats = dict(query(settings, "SELECT popularity_bucket, count(*) FROM item_stats GROUP BY ALL"))
    assert stats == {"head": 50, "mid": 100, "tail": 50}
    head, tail = (query(settings, f"SELECT sum(interaction_count) FROM item_stats WHERE popularity_bucket='{b}'")[0][0]
                  for b in ("head", "tail"))
    assert head > 5 * tail
    assert query(settings, "SELECT min(popularity_rank), max(popularity_rank) FROM item_stats") == [(1, 200)]
    # splits: one test and one valid event per user, test last in time, valid second-last; 90/10 in time.
    bad = query(settings, """SELECT count(*) FROM (
        SELECT user_id, count(*) FILTER (loo_split = 'test') AS t, count(*) FILTER (loo_split = 'valid') AS v,
               max(seq_pos) FILTER (loo_split = 'test') AS test_pos, max(seq_pos) AS last_pos,
               max(ts) FILTER (loo_split = 'train') AS last_train_ts, max(ts) FILTER (loo_split = 'test') AS test_ts
        FROM splits GROUP BY user_id)
        WHERE t <> 1 OR v <> 1 OR test_pos <> last_pos OR last_train_ts > test_ts""")[0][0]
    assert bad == 0
    # seq_pos numbers each user's events 0..n-1 in time order.
    assert query(settings, """SELECT count(*) FROM (
        SELECT seq_pos, row_number() OVER w - 1 AS position, ts < lag(ts) OVER w AS backwards FROM splits
        WINDOW w AS (PARTITION BY user_id ORDER BY seq_pos)) WHERE seq_pos <> position OR backwards""") == [(0,)]
    (train, test, cut_ok), = query(settings, """SELECT count(*) FILTER (chrono_split = 'train'),
        count(*) FILTER (chrono_split = 'test'),
        max(ts) FILTER (chrono_split = 'train') <= min(ts) FILTER (chrono_split = 'test') FROM splits""")
    assert (train, test) == (2700, 300) and cut_ok


def test_rerun_gives_identical_tables(settings_for):
    settings = settings_for()
    assert run(settings, "group:ingest or group:validated").success
    first = table_digests(settings)
    assert run(settings, "group:ingest or group:validated").success
    assert table_digests(settings) == first
    # Same input again: no volume change is reported against itself.
    assert query(settings, "SELECT count(DISTINCT load_batch) FROM load_history") == [(2,)]


def test_bad_file_blocks_downstream(settings_for, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Lipstick\ni2,Soap\ni3,Shampoo\n")
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{1 + (u + k) % 3},{1400000000 + 100 * k}\n" for u in range(10) for k in range(3))
        + "u1,i1,not-a-time\n,i2,1400000000\nu2,i9,1400000000\n")
    settings = settings_for(source={"kind": "files", "interactions": {"path": str(events)},
                                    "items": {"path": str(items)}})
    result = run(settings)
    assert not result.success  # a blocking check that fails with ERROR fails the run
    checks = check_results(result)
    hard = checks["interactions.interactions_hard_rules"]
    assert not hard.passed and hard.severity == dg.AssetCheckSeverity.ERROR
    failing = {f["rule"] for f in hard.metadata["failing_expectations"].value}
    assert failing == {"timestamp_parsable", "user_id_present", "item_in_catalogue"}
    offending = hard.metadata["offending_rows"].value
    assert offending["timestamp_parsable"][0]["reason"] == "timestamp: cannot parse not-a-time"
    # The valid rows landed and the bad ones were kept with reasons; downstream of `interactions` was skipped.
    assert query(settings, "SELECT count(*) FROM interactions") == [(30,)]
    assert query(settings, "SELECT count(*) FROM rejected_interactions") == [(3,)]
    done = materialised(result)
    assert {"interactions", "rejected_interactions", "items"} <= done
    blocked = BLOCKED_BY_INTERACTIONS
    assert not set(blocked) & done
    assert not_materialised(result) == blocked
    started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert not set(blocked) & started
    assert "content_embeddings" in done  # it needs only the items, which passed
    drift = checks["interactions.interactions_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN


def test_sequence_positions_follow_time_for_unordered_files(settings_for, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id\n" + "".join(f"i{k}\n" for k in range(8)))
    events = tmp_path / "events.csv"  # newest first and users interleaved: the file order is no help
    events.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{(u + k) % 8},{1400000000 + 100 * k}\n" for k in reversed(range(8)) for u in range(5)))
    settings = settings_for(source={"kind": "files", "interactions": {"path": str(events)},
                                    "items": {"path": str(items)}})
    assert run(settings, "group:ingest or group:validated").success
    got = query(settings, "SELECT user_id, seq_pos, epoch(ts)::BIGINT FROM splits ORDER BY user_id, seq_pos")
    assert got == [(f"u{u}", k, 1400000000 + 100 * k) for u in range(5) for k in range(8)]
