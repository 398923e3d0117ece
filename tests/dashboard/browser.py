"""A real headless Chromium for the dashboard tests, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs
them), found on ``PATH`` (or ``$CHROMIUM_BINARY`` / ``$CHROMEDRIVER``):
Selenium is given both paths, so it never looks for (or downloads) a
browser or driver of its own. Each browser gets a fresh profile directory
and the flags of a machine with no internet: no QUIC, no first-run pages, no
background fetches, no component updates, no sync — and no ``/dev/shm``
(a container's is often 64 MB, too small for Chromium).

A test that needs the browser skips, naming what is missing, where Chromium
or its driver is not installed, or the driver cannot start a browser here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or "chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",  # temporary files instead: a container's /dev/shm is small
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1300",
)


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots go: ``$TEST_ARTIFACTS/dashboard`` (CI sets it to a
    directory it keeps), else ``fallback`` (the test's tmp_path)."""
    root = os.environ.get("TEST_ARTIFACTS")
    path = Path(root) / "dashboard" if root else fallback
    path.mkdir(parents=True, exist_ok=True)
    return path


def console_errors(driver: Any) -> list[str]:
    """The page's console errors so far (script errors, CSP refusals, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def full_page_screenshot(driver: Any, path: Path) -> None:
    """A PNG of the whole page, below the window's fold too (Chrome DevTools'
    captureBeyondViewport)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)) and shutil.which(path) is None:
            return f"{path} not found: install Debian's {package} package (apt-get install -y chromium chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium (a Selenium WebDriver) with a fresh profile in ``profile``."""
    missing = _missing()
    if missing is not None:
        pytest.skip(missing)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    # The page's console (CSP violations and script errors land there).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.common.exceptions import WebDriverException

    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except (WebDriverException, OSError) as exc:  # installed, but it cannot run here (no display libs, a broken package...)
        why = (exc.msg or str(exc) or type(exc).__name__).strip().splitlines()[0]
        pytest.skip(f"{CHROMEDRIVER} could not start {CHROMIUM}: {why}")
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def log_in(driver: Any, url: str, timeout: float = 30.0) -> None:
    """Open a login link and press its *Log in* button (opening it alone spends nothing)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    button = WebDriverWait(driver, timeout).until(lambda d: d.find_element("id", "log-in"), message="the login form")
    button.click()
