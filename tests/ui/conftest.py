"""Fixtures of the browser test: one Dagster UI (as `sidflow ui` starts it) and one headless Chromium per module,
both always torn down."""

from __future__ import annotations

import pytest

from tests.helpers import SMALL_SYNTHETIC, write_config
from tests.ui.chromium import require_browser, start_chromium
from tests.ui.dagster_ui import DagsterUI, free_port, sidflow_ui_command

# This machine is slow and shared: `dagster dev` took 8-25 s to serve here, a one-asset run about 20 s.
SERVER_START_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def ui_config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("ui-config"), synthetic=SMALL_SYNTHETIC)


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory):
    return tmp_path_factory.mktemp("ui-home")


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory, ui_config, ui_home):
    require_browser()  # before the server starts: nothing to see it with
    workdir = tmp_path_factory.mktemp("ui-server")  # its cwd: nothing lands in the repository
    server = DagsterUI(sidflow_ui_command(ui_config, ui_home, free_port()), workdir / "server.log", cwd=workdir)
    try:
        server.wait_until_serving(SERVER_START_TIMEOUT_S)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    require_browser()
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()
