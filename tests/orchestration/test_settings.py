"""Run configs: merging with params.yaml, path resolution and validation, clear errors."""

from __future__ import annotations

import pytest

from orchestration.settings import ConfigError, load_settings
from tests.helpers import write_config


def test_run_config_overrides_params_and_resolves_paths(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "events.csv").write_text("user_id,item_id,timestamp\n")
    (tmp_path / "data" / "items.csv").write_text("item_id\n")
    config = write_config(tmp_path, source={
        "timestamp_unit": "ms",
        "interactions": {"path": "data/events.csv", "columns": {"user_id": "who"}},
        "items": "data/items.csv"}, quality={"max_invalid_fraction": 0.2})
    settings = load_settings(config=config, home=tmp_path / "home")
    assert settings.source.kind == "files"
    assert settings.source.interactions.path == str(tmp_path / "data" / "events.csv")
    assert settings.source.interactions.columns == {"user_id": "who"}
    assert settings.quality.max_invalid_fraction == 0.2
    assert settings.quality.timestamp_unit == "ms"
    assert settings.quality.rating_max == 5  # untouched params.yaml value


def test_data_root_placeholder(tmp_path, monkeypatch):
    (tmp_path / "e.csv").write_text("x\n")
    monkeypatch.setenv("SIDFLOW_DATA_ROOT", str(tmp_path))
    config = write_config(tmp_path / "..", source={"interactions": "{data_root}/e.csv", "items": "{data_root}/e.csv"})
    assert load_settings(config=config, home=tmp_path / "h").source.items.path == str(tmp_path / "e.csv")


@pytest.mark.parametrize("sections, message", [
    ({"sourse": {}}, r"unknown section\(s\) sourse"),
    ({"source": {"interactions": {"path": "missing.csv"}}}, r"source.interactions.path .*missing.csv is not an existing file"),
    ({"source": {"items": {"nopath": 1}}}, r"source.items needs a `path`"),
    ({"source": {"items": {"path": "run.yaml", "colums": {}}}}, r"source.items has unknown key\(s\) colums"),
    ({"source": {"items": {"path": "run.yaml"}}}, r"cannot tell the file format"),
    ({"quality": {"max_invalid_fraction": "lots"}}, r"run.yaml: .*max_invalid_fraction"),
    ({"schedules": {"daily_refresh": "at three"}}, r"run.yaml: schedules.daily_refresh: .*not a cron expression"),
    ({"alerts": {"webhook": "http://x"}}, r"run.yaml: alerts.webhook: Extra inputs"),
    ({"retrieval": {"train": {"valid_beam": 5}}}, r"retrieval.train: valid_beam must be >= 10"),
])
def test_bad_configs_name_file_and_key(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(config=write_config(tmp_path, **sections), home=tmp_path / "home")


def test_home_must_be_a_directory_and_not_a_root(tmp_path):
    with pytest.raises(ConfigError, match="top of a file system"):
        load_settings(home="/")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        load_settings(home=tmp_path / "file")
