"""Fixtures shared by the tests."""

from __future__ import annotations

import shutil

import pytest

from orchestration.settings import RunSettings, load_settings
from tests.helpers import SMALL_SYNTHETIC, write_config


@pytest.fixture
def settings_for(tmp_path):
    """settings_for(**sections) -> RunSettings with home under tmp_path."""
    def build(**sections) -> RunSettings:
        sections.setdefault("synthetic", SMALL_SYNTHETIC)
        return load_settings(config=write_config(tmp_path, **sections), home=tmp_path / "home")
    return build



ADC_SID_TABLES = ("group:ingest or group:validated or group:features or key:sid_tokenizer or key:sid_lookup "
                  "or key:sid_importance")


@pytest.fixture(scope="session")
def built_sid_home(tmp_path_factory):
    """A run config and home with ADC-SID's tables of the small synthetic catalogue, built once per session."""
    from tests.assets.test_sid_tables import FAST_SASREC, FAST_TOKENIZERS
    from tests.helpers import run

    root = tmp_path_factory.mktemp("built_sid_home")
    config = write_config(root, synthetic=SMALL_SYNTHETIC, sasrec=FAST_SASREC, tokenizers=FAST_TOKENIZERS)
    assert run(load_settings(config=config, home=root / "home"), ADC_SID_TABLES).success
    return root


@pytest.fixture
def sid_home(built_sid_home, tmp_path) -> RunSettings:
    """Settings over a private copy of `built_sid_home`, for tests that change its tables."""
    shutil.copytree(built_sid_home, tmp_path, dirs_exist_ok=True)
    return load_settings(config=tmp_path / "run.yaml", home=tmp_path / "home")
