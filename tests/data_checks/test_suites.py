"""GX suites: counts summed over chunks, tolerance (`mostly`) semantics, drift rules; timestamp parsing."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from data_checks import suites
from data_checks.rules import QualityRules, parse_timestamp_sql


def interaction_frame(n: int, missing_users: int = 0, bad_ratings: int = 0) -> pd.DataFrame:
    frame = pd.DataFrame({
        "readable": True, "user_code": np.arange(n, dtype="float64"), "item_code": np.arange(n, dtype="float64"),
        "ts_epoch": 1.4e9, "rating_readable": True, "rating": 4.0, "item_known": True, "is_duplicate": False},
        index=range(n))
    frame.loc[: missing_users - 1, "user_code"] = np.nan
    frame.loc[n - bad_ratings:, "rating"] = 9.0 if bad_ratings else frame.loc[n - bad_ratings:, "rating"]
    return frame


def test_counts_are_summed_over_chunks_and_tolerance_applies():
    rules = suites.interaction_rules(QualityRules(max_invalid_fraction=0.05))
    outcome = suites.validate("t", rules, [interaction_frame(100, missing_users=4), interaction_frame(100)])
    by_name = {r.name: r for r in outcome.rules}
    assert by_name["user_id_present"].failing == 4 and by_name["user_id_present"].rows == 200
    assert outcome.passed  # 2% missing is within a 5% tolerance
    outcome = suites.validate("t", rules, [interaction_frame(100, missing_users=4, bad_ratings=7)])
    assert [r.name for r in outcome.failed] == ["rating_in_range"]
    assert outcome.failed[0].failing == 7 and outcome.failed[0].failing_fraction == pytest.approx(0.07)


def test_strict_rules_fail_on_a_single_row():
    rules = suites.interaction_rules(QualityRules(max_invalid_fraction=0.0))
    assert not suites.validate("t", rules, [interaction_frame(1000, missing_users=1)]).passed
    assert suites.validate("t", rules, [interaction_frame(1000)]).passed


def test_drift_rules():
    rules = suites.drift_rules(QualityRules(warn_rejected_fraction=0.01, max_volume_change=0.5))
    ok = pd.DataFrame({"rejected_fraction": [0.001], "volume_change": [0.2]})
    assert suites.validate("d", rules, [ok]).passed
    first_load = pd.DataFrame({"rejected_fraction": [0.0], "volume_change": [float("nan")]})
    assert suites.validate("d", rules, [first_load]).passed
    jump = pd.DataFrame({"rejected_fraction": [0.02], "volume_change": [-0.8]})
    assert [r.name for r in suites.validate("d", rules, [jump]).failed] == ["rejected_share", "volume_change"]


def test_chunks_bound_the_frame_size():
    con = duckdb.connect()
    sizes = [len(f) for f in suites.chunks(con, "SELECT range AS x FROM range(2500)", rows=1000)]
    assert sum(sizes) == 2500 and max(sizes) < 2000 and len(sizes) >= 2
    assert [len(f) for f in suites.chunks(con, "SELECT 1 AS x WHERE false")] == [0]


@pytest.mark.parametrize("unit, text, expected", [
    ("auto", "1400000000", "2014-05-13 16:53:20"), ("auto", "1400000000000", "2014-05-13 16:53:20"),
    ("auto", "2014-05-13T16:53:20Z", "2014-05-13 16:53:20"), ("auto", "2014-05-13 18:53:20+02:00", "2014-05-13 16:53:20"),
    ("s", "1400000000.5", "2014-05-13 16:53:20.500000"), ("ms", "1400000000000", "2014-05-13 16:53:20"),
    ("iso", "2014-05-13", "2014-05-13 00:00:00"), ("auto", "May 13", None), ("iso", "1400000000", None),
])
def test_timestamp_parsing(unit, text, expected):
    value = duckdb.connect().execute(f"SELECT {parse_timestamp_sql('t', unit)} FROM (SELECT ? AS t)", [text]).fetchall()[0][0]
    assert (None if value is None else str(value)) == expected
