"""Fixtures shared by the tests."""

from __future__ import annotations

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

