"""Headless Chromium for the console's browser tests (Debian's chromium + chromedriver, driven by Selenium):
the browser fixtures (a test module imports `browser_fixture` and `chromium_installed`), screenshots to
tests/artifacts/admin/, following links, signing in. No network: Chromium's background traffic is off."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from admin.support import PASSWORD, USER
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "admin"
START_TIMEOUT = 30.0
#: What Chromium needs on a closed network and as root (see the machine notes): no sandbox, no GPU,
#: none of the background connections it would otherwise try at every start.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]

MISSING = "Debian's chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"


def require_chromium() -> None:
    """Skip without the browser on a developer's machine; with CI=true a missing browser fails."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {MISSING}", pytrace=False)
    pytest.skip(f"{MISSING} (with CI=true this fails)")


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    """Autouse in every module that imports it (and only there: a conftest would skip non-browser tests)."""
    require_chromium()


@pytest.fixture(name="browser")  # named apart from the tests' `browser` argument it feeds
def browser_fixture(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path) as driver:
        yield driver


@contextmanager
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium with a profile of its own under `tmp_path`, quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str, backend: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}-{backend}.png"))


def backend_of(database_url: str) -> str:
    return database_url.split(":", 1)[0].split("+", 1)[0]


def follow(driver: WebDriver, element: WebElement) -> None:
    """Click a link or a submit button and wait until the next page has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, START_TIMEOUT).until(lambda _driver: _replaced(page))


def _replaced(page: WebElement) -> bool:
    """Whether `page` has left the document. Selenium's staleness_of expects StaleElementReference, but
    chromedriver, asked in the middle of the navigation, may answer "unknown error: Node with given id
    does not belong to the document" instead: that means gone too; any other answer means ask again."""
    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        return "does not belong to the document" in str(exc)
    return False


def sign_in(driver: WebDriver, password: str = PASSWORD) -> None:
    name = driver.find_element(By.ID, "username")
    name.clear()  # the form keeps the name typed before a failed attempt
    name.send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(password)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


