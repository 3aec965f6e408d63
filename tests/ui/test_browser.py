"""The README's `sidflow ui` in a real browser: it serves on 127.0.0.1 only, shows every asset group, and a
materialisation launched from an asset page succeeds. Headless Chromium from Debian's packages; without them the
test skips, except in CI (CI=true), where `.ci/run` installs them and a missing browser fails."""

from __future__ import annotations

import pytest

from tests.ui.chromium import require_browser

require_browser(at_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402

from assets import GROUPS  # noqa: E402
from orchestration.build import build_definitions  # noqa: E402
from orchestration.settings import load_settings  # noqa: E402
from tests.helpers import SMALL_SYNTHETIC, query  # noqa: E402
from tests.ui.dagster_pages import (materialise_from_asset_page, screenshot_on_failure,  # noqa: E402
                                    sidebar_asset_groups, skip_community_dialog, wait_for_run_to_end)
from tests.ui.dagster_ui import LOOPBACK, accepts_connections, listening_addresses, outward_address  # noqa: E402

PAGE_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300
CHEAP_ASSET = "raw_items"  # group `ingest`: lands the synthetic catalogue's items, no upstream, ~1 s of work


@pytest.fixture(scope="module")
def ui(dagster_ui, chromium):
    skip_community_dialog(chromium, dagster_ui.url)
    return dagster_ui


def defined_asset_groups(config, home) -> set[str]:
    """The groups of the Definitions the UI loads (built the same way), plus every group of assets.GROUPS."""
    defs = build_definitions(load_settings(config=config, home=home))
    return {spec.group_name for spec in defs.resolve_all_asset_specs()} | set(GROUPS)


def test_ui_listens_on_loopback_only(dagster_ui):
    assert listening_addresses(dagster_ui.port) == {LOOPBACK}, dagster_ui.log_tail()
    other = outward_address()
    if other is not None:
        assert not accepts_connections(other, dagster_ui.port), f"the UI answers on {other}:{dagster_ui.port}"


def test_lineage_lists_every_asset_group(ui, chromium, ui_config, ui_home, tmp_path):
    expected = defined_asset_groups(ui_config, ui_home)
    with screenshot_on_failure(chromium, tmp_path / "asset-groups.png", ui.log_tail):
        shown = sidebar_asset_groups(chromium, ui.url, expected, PAGE_TIMEOUT_S)
        assert shown == expected, f"groups in the UI {sorted(shown)}, defined {sorted(expected)}"


def test_materialising_an_asset_from_its_page_succeeds(ui, chromium, ui_config, ui_home, tmp_path):
    with screenshot_on_failure(chromium, tmp_path / "run.png", ui.log_tail):
        run_id = materialise_from_asset_page(chromium, ui.url, CHEAP_ASSET, PAGE_TIMEOUT_S)
        status = wait_for_run_to_end(chromium, ui.url, run_id, RUN_TIMEOUT_S)
        assert status == "SUCCESS", f"run {run_id} of {CHEAP_ASSET} ended {status}"
        assert CHEAP_ASSET in chromium.find_element(By.TAG_NAME, "body").text
    # The run wrote where `sidflow ui --home` pointed it, from the config it was given.
    settings = load_settings(config=ui_config, home=ui_home)
    assert query(settings, f"SELECT count(*) FROM {CHEAP_ASSET}") == [(SMALL_SYNTHETIC["items"],)]
