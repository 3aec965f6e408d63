"""What the browser test reads and clicks in the Dagster 1.13 UI.

The UI has almost no data-testid attributes, so the hooks are URLs, visible text, accessibility labels and the
document title, each of which the UI itself relies on:
- `/asset-groups` (the "Lineage" page): its sidebar lists every asset group as a button holding an icon with
  aria-label "asset_group" and the group's name in a `title` attribute (the graph's group boxes have no such
  button).
- `/assets/<key>`: the asset page, whose primary button reads exactly "Materialize" ("Materialize all" and
  "Materialize selected" live on other pages). Launching shows a toast linking to `/runs/<run id>`.
- `/runs/<run id>`: the run page sets the document title to `Runs | <short id> [<RunStatus>]` (and
  `Runs | <job> | <short id> [<RunStatus>]` for named jobs), updated live; the status is Dagster's RunStatus enum.
- localStorage `communityNux`: once set, the "Join the Dagster community" dialog that `dagster dev` opens on
  localhost (and which covers every button) is not shown again.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
RUN_LINK = re.compile(r"^/runs/([0-9a-f-]{36})")
SIDEBAR_GROUPS_JS = """
return Array.from(document.querySelectorAll('button [aria-label="asset_group"]'),
                  icon => (icon.closest('button').querySelector('[title]') || {}).title);
"""
RUN_LINKS_JS = "return Array.from(document.querySelectorAll('a[href^=\"/runs/\"]'), a => a.getAttribute('href'));"


def wait_for(driver, timeout_s: float, condition, describe_failure):
    """WebDriverWait that fails with a readable message (describe_failure() is called at the timeout)."""
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(condition)
    except TimeoutException:
        raise AssertionError(f"after {timeout_s:.0f} s: {describe_failure()}") from None


@contextmanager
def screenshot_on_failure(driver, screenshot: Path, server_log_tail):
    try:
        yield
    except Exception as err:
        driver.save_screenshot(str(screenshot))
        raise AssertionError(f"{err}\nscreenshot: {screenshot}\npage: {driver.current_url}\n"
                             f"server log:\n{server_log_tail()}") from err


def skip_community_dialog(driver, base_url: str) -> None:
    driver.get(f"{base_url}/server_info")  # any page of the UI's origin, to reach its localStorage
    driver.execute_script("window.localStorage.setItem('communityNux', '1');")


def sidebar_asset_groups(driver, base_url: str, expected: set[str], timeout_s: float) -> set[str]:
    """The group names in the lineage sidebar, once they equal `expected` (or what is shown at the timeout)."""
    driver.get(f"{base_url}/asset-groups")
    shown = lambda: set(filter(None, driver.execute_script(SIDEBAR_GROUPS_JS)))  # noqa: E731
    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(lambda d: shown() == expected)
    except TimeoutException:
        pass
    return shown()


def materialise_from_asset_page(driver, base_url: str, asset_key: str, timeout_s: float) -> str:
    """Click the asset page's Materialize button; returns the id of the run its toast links to."""
    driver.get(f"{base_url}/assets/{asset_key}")
    before: set[str] = set()  # run links already on the loaded page (an earlier materialisation's)

    def click_materialize(d) -> bool:
        # Found and clicked in one go: the page re-renders while it loads, which makes held elements stale.
        try:
            button = d.find_element(By.XPATH, "//button[normalize-space(.)='Materialize']")
            if not (button.is_displayed() and button.is_enabled()):
                return False
            before.update(d.execute_script(RUN_LINKS_JS))
            button.click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    wait_for(driver, timeout_s, click_materialize, lambda: f"no enabled Materialize button on /assets/{asset_key}")

    def new_run_id(d):
        for href in set(d.execute_script(RUN_LINKS_JS)) - before:
            match = RUN_LINK.match(href)
            if match:
                return match.group(1)
        return None

    return wait_for(driver, timeout_s, new_run_id, lambda: "no link to the launched run appeared")


def run_status(driver) -> str | None:
    match = re.search(r"\[([A-Z_]+)\]\s*$", driver.title)
    return match.group(1) if match else None


def wait_for_run_to_end(driver, base_url: str, run_id: str, timeout_s: float) -> str:
    driver.get(f"{base_url}/runs/{run_id}")
    return wait_for(driver, timeout_s, lambda d: run_status(d) in TERMINAL_RUN_STATUSES and run_status(d),
                    lambda: f"run {run_id} still {run_status(driver)!r} (title {driver.title!r})")
