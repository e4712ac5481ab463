"""The console in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) against
`ketamine-fhir serve` on loopback: sign in, read a mapping and a profile, try a record, sign out.

Screenshots of each page go to tests/artifacts/admin/. No network: Chromium's background traffic is off.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError

import pytest
from admin.support import KFHIR, PASSWORD, USER, cli_env, free_port, kfhir
from factories import administration
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

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


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    """Skipped without the browser on a developer's machine; with CI=true a missing browser fails."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {MISSING}", pytrace=False)
    pytest.skip(f"{MISSING} (with CI=true this fails)")


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`ketamine-fhir serve` on a free loopback port, with an admin account made by the CLI."""
    made = kfhir("admin", "create-user", USER, "--password-stdin", database_url=database_url, cwd=tmp_path,
                 stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KFHIR), "serve", "--port", str(port)], env=cli_env(database_url),
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(proc, f"{base}/health", log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (a loopback URL we built)
                return
        except (URLError, ConnectionError):
            time.sleep(0.1)
    pytest.fail(f"serve did not answer within {START_TIMEOUT} s:\n{log.read_text()}")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
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


def _backend(database_url: str) -> str:
    return database_url.split(":", 1)[0].split("+", 1)[0]


def follow(driver: WebDriver, element: WebElement) -> None:
    """Click a link or a submit button and wait until the next page has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, START_TIMEOUT).until(expected_conditions.staleness_of(page))


def _sign_in(driver: WebDriver, password: str = PASSWORD) -> None:
    name = driver.find_element(By.ID, "username")
    name.clear()  # the form keeps the name typed before a failed attempt
    name.send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(password)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def test_an_admin_signs_in_reviews_a_mapping_and_a_profile_tries_a_record_and_signs_out(
        live_server: str, browser: WebDriver, database_url: str) -> None:
    backend = _backend(database_url)
    browser.get(f"{live_server}/admin/mappings/administration")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    shot(browser, "sign-in", backend)
    _sign_in(browser, "not the password")
    assert "Wrong username or password." in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    _sign_in(browser)

    # back on the page asked for: the administration rules, route coded in SNOMED
    assert browser.current_url == f"{live_server}/admin/mappings/administration"
    captions = [c.text for c in browser.find_elements(By.TAG_NAME, "caption")]
    assert "MedicationAdministration (administration)" in captions
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "table.rules td code")]
    assert "MedicationAdministration.dosage.route" in cells
    assert "Bundle" in browser.find_elements(By.CSS_SELECTOR, ".side-by-side pre")[1].text
    shot(browser, "mapping-administration", backend)

    follow(browser, browser.find_element(By.LINK_TEXT, "Overview"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    shot(browser, "overview", backend)
    follow(browser, browser.find_element(By.LINK_TEXT, "Mappings"))
    shot(browser, "mappings", backend)

    follow(browser, browser.find_element(By.LINK_TEXT, "Profiles"))
    shot(browser, "profiles", backend)
    follow(browser, browser.find_element(By.LINK_TEXT, "Ketamine administration"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Ketamine administration"
    keys = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#invariants ~ table th[scope=row]")]
    assert "ket-2" in keys
    shot(browser, "profile-ketamine-administration", backend)

    follow(browser, browser.find_element(By.LINK_TEXT, "Try it"))
    Select(browser.find_element(By.ID, "kind")).select_by_value("administration")
    browser.find_element(By.ID, "document").send_keys(json.dumps(administration()))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    assert browser.find_element(By.ID, "result-h").text == "Result: accepted"
    assert '"resourceType": "Bundle"' in browser.find_element(By.ID, "bundle").text
    shot(browser, "try-valid-record", backend)

    Select(browser.find_element(By.ID, "kind")).select_by_value("administration")
    field = browser.find_element(By.ID, "document")
    field.clear()
    field.send_keys(json.dumps(administration(status="stopped")))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    assert browser.find_element(By.ID, "result-h").text == "Result: refused"
    shot(browser, "try-invalid-record", backend)

    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.sign-out button"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    browser.get(f"{live_server}/admin/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
