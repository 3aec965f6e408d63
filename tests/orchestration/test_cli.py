"""The `sidflow` command line: a healthy run exits 0 with a summary; a blocking failure exits 1."""

from __future__ import annotations

import pytest

from orchestration.cli import main
from tests.helpers import BLOCKED_BY_INTERACTIONS, SMALL_SYNTHETIC, write_config


def test_run_prints_a_summary_and_succeeds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIDFLOW_HOME", str(tmp_path / "home"))
    config = write_config(tmp_path, synthetic=SMALL_SYNTHETIC)
    assert main(["run", "--config", str(config), "--select", "group:ingest or group:validated"]) == 0
    out = capsys.readouterr().out
    assert "succeeded" in out and "materialised splits" in out and "interactions_hard_rules passed" in out
    assert (tmp_path / "home" / "warehouse.duckdb").is_file()
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").is_file()


def test_blocking_failure_exits_non_zero(tmp_path, capsys):
    (tmp_path / "items.csv").write_text("item_id\ni1\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\nu1,i1,soon\nu1,i1,1400000000\n")
    config = write_config(tmp_path, source={"interactions": "events.csv", "items": "items.csv"})
    assert main(["run", "--config", str(config), "--home", str(tmp_path / "home")]) == 1
    out = capsys.readouterr().out
    assert "FAILED (ERROR)" in out and f"not materialised (blocked or failed upstream): {', '.join(BLOCKED_BY_INTERACTIONS)}" in out


def test_bad_config_exits_with_a_message(tmp_path):
    config = write_config(tmp_path, source={"interactions": "nowhere.csv"})
    with pytest.raises(SystemExit, match=r"sidflow: .*run.yaml: source.interactions.path .*nowhere.csv"):
        main(["run", "--config", str(config), "--home", str(tmp_path / "home")])


def test_arrivals_land_numbered_batches(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["arrivals", "5", "--home", str(home)]) == 0
    assert main(["arrivals", "3", "--home", str(home)]) == 0
    landed = sorted(p.name for p in (home / "landing" / "items").iterdir())
    assert landed == ["arrivals-0001000-5.parquet", "arrivals-0001005-3.parquet"]  # ids after the catalogue's 1,000
    with pytest.raises(SystemExit, match="COUNT must be >= 1"):
        main(["arrivals", "0", "--home", str(home)])
