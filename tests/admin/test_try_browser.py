"""Try it in real headless Chromium against `ketamine-fhir serve`: a session of 71 mg/kg IV ketamine (an
anaesthetic-range dose, a high-severity finding) is shown in red, as rendered, and never as a green "accepted"."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin.browsing import backend_of, browser_fixture, chromium_installed, follow, shot, sign_in  # noqa: F401 - the fixtures
from admin.support import PASSWORD, USER
from cli.support import kfhir
from factories import administration
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select
from support import serving


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    made = kfhir("admin", "create-user", USER, "--password-stdin", database_url=database_url, cwd=tmp_path,
                 stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    with serving.served(["serve"], serving.script_env(database_url), tmp_path, ready="/health") as server:
        yield server.base


def colour(browser: WebDriver, element: WebElement) -> tuple[int, int, int]:
    """The text colour Chromium paints, as (r, g, b)."""
    rgb = str(browser.execute_script("return getComputedStyle(arguments[0]).color", element))
    r, g, b = (int(part) for part in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    return r, g, b


def named(browser: WebDriver, variable: str) -> tuple[int, int, int]:
    """The colour a console CSS variable (--bad, --good) paints."""
    probe = browser.execute_script(
        "const p = document.createElement('span'); p.style.color = `var(${arguments[0]})`;"
        "document.body.appendChild(p); return p;", variable)
    return colour(browser, probe)


def test_a_high_severity_finding_is_red_and_never_a_green_accepted(live_server: str, browser: WebDriver,
                                                                 database_url: str) -> None:
    browser.get(f"{live_server}/admin/try")
    sign_in(browser)
    assert browser.current_url == f"{live_server}/admin/try"
    Select(browser.find_element(By.ID, "kind")).select_by_value("administration")
    record = json.dumps(administration(dose_mg=4970, weight_kg=70), indent=1)  # 71 mg/kg IV
    browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, "document"), record)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))  # not the sign-out
    result = browser.find_element(By.ID, "result")
    browser.execute_script("arguments[0].scrollIntoView()", result)
    shot(browser, "try-high-severity", backend_of(database_url))
    heading = result.find_element(By.TAG_NAME, "h2").text
    assert heading == "Result: accepted with 1 high-severity finding", heading
    red, green = named(browser, "--bad"), named(browser, "--good")
    assert red[0] > red[1] and red[0] > red[2] and red != green  # the palette's "bad" is a red
    summary = result.find_element(By.CSS_SELECTOR, "h2 + p")
    assert summary.get_attribute("role") == "alert" and colour(browser, summary) == red
    high = result.find_element(By.CSS_SELECTOR, "tr.severity-high td")
    assert high.text == "high" and colour(browser, high) == red
    # nothing in the result is painted the green of a plain "accepted"
    painted = [colour(browser, e) for e in result.find_elements(By.CSS_SELECTOR, "h2, p, td, th")]
    assert green not in painted
    assert not result.find_elements(By.CSS_SELECTOR, ".ok")
