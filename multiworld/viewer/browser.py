"""Headless Chromium for the viewer's browser test, benchmark and screenshot (Selenium, dev extra).

Uses the system's chromium and its matching chromedriver (Debian: packages ``chromium`` and
``chromium-driver``); nothing is downloaded. :func:`chromium` raises :class:`BrowserUnavailable`
naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


class BrowserUnavailable(RuntimeError):
    """No usable headless Chromium here (the message says what to install)."""


def _find(env: str, candidates: tuple[str, ...], name: str) -> str:
    path = os.environ.get(env)
    if path:
        return path
    for c in candidates:
        if os.path.exists(c):
            return c
    found = shutil.which(name)
    if found:
        return found
    raise BrowserUnavailable(
        f"{name} not found (looked at {', '.join(candidates)} and PATH; set {env}); "
        "on Debian: apt-get install -y chromium chromium-driver"
    )


def chromium(width: int = 1400, height: int = 900):
    """A Selenium WebDriver of a fresh headless Chromium profile; ``quit()`` it when done."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise BrowserUnavailable(f"selenium is not installed ({e}); pip install -e '.[dev]'") from None
    binary = _find("MULTIWORLD_CHROMIUM", CHROMIUM, "chromium")
    driver_path = _find("MULTIWORLD_CHROMEDRIVER", CHROMEDRIVER, "chromedriver")
    profile = tempfile.mkdtemp(prefix="multiworld-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as e:
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserUnavailable(f"cannot start {binary} through {driver_path}: {e}") from None
    quit_driver = driver.quit

    def quit_and_clean() -> None:
        try:
            quit_driver()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def wait_for(driver, script: str, timeout: float = 60.0, message: str = ""):
    """Wait until ``script`` (a JS expression) is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script(f"return ({script});"), message or f"timed out waiting for {script}"
    )
