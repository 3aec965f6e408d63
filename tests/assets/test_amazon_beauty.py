"""The real benchmark data loads through the generic file path with the config kept in the repository."""

from __future__ import annotations

import datetime as dt

import pytest

from orchestration.settings import REPO_ROOT, load_settings
from tests.helpers import AMAZON_BEAUTY, check_results, query, run

pytestmark = pytest.mark.skipif(not (AMAZON_BEAUTY / "interactions.csv.gz").exists(),
                                reason="../shared/data/amazon-beauty is not present")


def test_amazon_beauty_loads_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDFLOW_DATA_ROOT", str(AMAZON_BEAUTY.parent))
    settings = load_settings(config=REPO_ROOT / "configs" / "amazon_beauty.yaml", home=tmp_path / "home")
    result = run(settings, "group:ingest or group:validated")
    assert result.success
    assert all(c.passed for c in check_results(result).values())
    assert query(settings, "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id) FROM interactions") == [
        (198_502, 22_363, 12_101)]
    assert query(settings, "SELECT count(*) FROM rejected_interactions") == [(0,)]
    assert query(settings, "SELECT count(*) FROM items") == [(12_101,)]
    # Leave-one-out: one test and one validation event per user; the test event is the last in seq_pos order.
    assert query(settings, """SELECT count(*) FILTER (loo_split = 'test'), count(*) FILTER (loo_split = 'valid')
                              FROM splits""") == [(22_363, 22_363)]
    assert query(settings, """SELECT count(*) FROM splits WHERE loo_split = 'test'
                              AND event_order <> (SELECT max(event_order) FROM splits s WHERE s.user_id = splits.user_id)
                           """) == [(0,)]
    assert query(settings, "SELECT min(ts)::DATE, max(ts)::DATE FROM interactions") == [
        (dt.date(2002, 6, 12), dt.date(2014, 7, 23))]
