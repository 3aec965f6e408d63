"""Headless Chromium from Debian's packages (chromium, chromium-driver), driven by selenium."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless as root in a sandbox-less container; the networking flags stop Chromium's background connections,
# which this machine's closed network refuses by the dozen.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1000")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_browser_parts() -> list[str]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package (extra `dev`)")
    return missing


def require_browser(at_module_level: bool = False) -> None:
    """Skip where the browser is not installed; in CI (CI=true) fail instead, since `.ci/run` installs it.
    At module level (before anything starts) it only skips: a failure there would be a collection error,
    which stops the whole suite, so in CI the fixtures call it again and fail the browser tests alone."""
    missing = missing_browser_parts()
    if not missing:
        return
    reason = f"headless Chromium not available: missing {', '.join(missing)} (apt-get install chromium chromium-driver)"
    if in_ci():
        if at_module_level:
            return
        pytest.fail(f"CI must run the browser test: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def start_chromium(profile_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    # A fresh profile per run: no state from an earlier session, nothing written to the user's profile.
    options.add_argument(f"--user-data-dir={profile_dir}")
    # The system chromedriver is named explicitly, so Selenium Manager never tries to download one.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
