"""The exchange console in real headless Chromium at desktop (1366×900) and phone (390×844) sizes, against
`ketamine-fhir serve` with the demo data queued for three EHRs played by a small real server (one accepts, one
refuses every Bundle with 422, one is down with 503), delivered by `ketamine-fhir push`: the dashboard shows the
failing endpoint and the dead letters, a dead job's page links the server's error into the Bundle sent, a job
leads to its record and patient, a sign-in lockout is in the audit trail; at phone width the navigation fits and
tables scroll inside their own box. Screenshots go to tests/artifacts/admin/ (named `console-…`)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin.browsing import backend_of, chromium, follow, require_chromium, shot, sign_in
from admin.support import PASSWORD, USER
from cli.support import kfhir
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from support import serving
from support.ehr import ehr_server

DESKTOP, PHONE = (1366, 900), (390, 844)


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    require_chromium()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path) as driver:
        yield driver


@pytest.fixture
def console(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`serve` with the demo data queued for three EHRs, each queue pushed once (`push` audits each delivery)."""
    with ehr_server() as ehr:
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text("endpoints:\n" + "".join(
            f"  - name: {name}\n    base_url: {ehr}/{path}\n"
            for name, path in (("hospital", "ok"), ("registry", "refusing"), ("lab", "down"))), encoding="utf-8")
        settings = {"KFHIR_ENDPOINTS_FILE": str(endpoints)}
        made = kfhir("admin", "create-user", USER, "--password-stdin", database_url=database_url, cwd=tmp_path,
                     stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        assert kfhir("seed-demo", database_url=database_url, cwd=tmp_path, **settings).returncode == 0
        for name in ("hospital", "registry", "lab"):
            kfhir("push", "--endpoint", name, database_url=database_url, cwd=tmp_path, **settings)
        env = serving.script_env(database_url, **settings)
        with serving.served(["serve"], env, tmp_path, ready="/health") as server:
            yield server.base


def size(driver: WebDriver, width_height: tuple[int, int]) -> None:
    """The viewport of a desktop browser or of a phone (a mobile viewport: the page's meta viewport applies)."""
    width, height = width_height
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def page_width(driver: WebDriver) -> int:
    return int(driver.execute_script("return document.documentElement.scrollWidth"))


def contrast(rgb: str, background: tuple[int, int, int] = (255, 255, 255)) -> float:
    """WCAG contrast ratio of a computed `rgb(r, g, b)` colour against `background`."""
    def luminance(channels: tuple[int, ...]) -> float:
        linear = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    colour = tuple(int(n) for n in re.findall(r"\d+", rgb)[:3])
    lighter, darker = sorted((luminance(colour), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_an_admin_finds_the_failing_endpoint_and_the_dead_letters_and_follows_a_job_to_its_patient(
        console: str, browser: WebDriver, database_url: str, tmp_path: Path) -> None:
    backend = backend_of(database_url)
    size(browser, DESKTOP)
    browser.get(f"{console}/admin/")
    for _ in range(5):
        sign_in(browser, "not the password")
    assert "locked until" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    shot(browser, "console-sign-in-locked-desktop", backend)
    assert kfhir("admin", "unlock", USER, database_url=database_url, cwd=tmp_path).returncode == 0
    sign_in(browser)

    # the overview opens on the exchange dashboard: the refusing EHR's dead letters, the one that is down
    assert browser.find_element(By.CSS_SELECTOR, "main h2").text == "Exchange health"
    alerts = browser.find_element(By.ID, "alerts").text
    assert "registry: 44 dead jobs — they need a person" in alerts
    assert "lab: failing — 44 jobs retrying after errors" in alerts
    rows = {r.find_element(By.TAG_NAME, "th").text: r.text for r in browser.find_elements(By.CSS_SELECTOR, "#health tbody tr")}
    assert "needs a person" in rows["registry"] and "HTTP 422" in rows["registry"]
    assert "failing — retrying after errors" in rows["lab"] and "HTTP 503" in rows["lab"]
    assert rows["hospital"].split()[1:3] == ["healthy", "44"]
    workers = browser.find_element(By.ID, "workers-summary").text  # each push was a worker, now stopped
    assert workers.startswith("No outbox worker is running") and workers.count("— stopped") == 3
    assert "(44 delivered, 0 failed)" in workers and "(0 delivered, 44 failed)" in workers
    shot(browser, "console-overview-dashboard-desktop", backend)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "nav a[href$='/admin/exchange']"))
    shot(browser, "console-exchange-dashboard-desktop", backend)

    # a dead job: what was sent, where the server's error points in it, the way to its record and patient
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#alerts a[href*='endpoint=registry']"))
    states = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr td:nth-child(2)")]
    assert len(states) == 44 and set(states) == {"dead — needs a person"}
    numbers = [int(a.text) for a in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody th a")]
    assert numbers == sorted(numbers, reverse=True)  # newest first
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#jobs tbody th a"))
    assert browser.find_element(By.TAG_NAME, "h1").text.endswith(": dead — needs a person")
    assert re.search(r"POST http://127\.0\.0\.1:\d+/refusing: 422", browser.find_element(By.ID, "last-error").text)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/refusing", browser.find_element(By.ID, "sent-url").text)
    shot(browser, "console-job-dead-desktop", backend)
    # the server names an entry's status: the link goes to that line, or its nearest shown ancestor
    link = browser.find_element(By.CSS_SELECTOR, "table.outcome a[href^='#sent-Bundle.entry[']")
    assert re.fullmatch(r"Bundle\.entry\[\d\]\.resource\.status", link.text)
    anchor = link.get_attribute("href").split("#", 1)[1]
    link.click()
    target = browser.execute_script("return document.querySelector(':target')")
    assert target.get_attribute("id") == anchor and target.value_of_css_property("outline-style") == "solid"
    shot(browser, "console-job-dead-bundle-line-desktop", backend)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#facts + dl a[href*='/admin/records/']"))
    assert {h.text for h in browser.find_elements(By.CSS_SELECTOR, "#jobs ~ h3")} == \
        {"To hospital", "To registry", "To lab"}  # the record's jobs per endpoint
    assert browser.find_elements(By.CSS_SELECTOR, "#resources-table tbody tr")
    trail = browser.find_element(By.ID, "record-audit-table").text
    assert "worker:" in trail and "failed — dead letter" in trail and "delivered" in trail
    shot(browser, "console-record-desktop", backend)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "main dl.facts a[href*='/admin/patients/course']"))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Course of ")
    shot(browser, "console-course-desktop", backend)

    # the audit trail has the lockout, the sign-ins and the deliveries with their real outcomes
    browser.get(f"{console}/admin/audit?agent=admin:alice")
    trail = browser.find_element(By.ID, "audit").text
    assert "lockout: 5 failed sign-ins" in trail and "failed sign-in: wrong username or password" in trail
    assert "success (signed in)" in trail
    shot(browser, "console-audit-lockout-desktop", backend)

    # keyboard: the focus ring stands out from the page (WCAG 2.2: at least 3:1)
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    ring = browser.execute_script("return getComputedStyle(document.activeElement).outlineColor")
    assert contrast(ring) >= 3.0, ring

    # an unknown console address: the console's own 404 page
    browser.get(f"{console}/admin/exchange/jobs/99999999999999999999")
    assert browser.find_element(By.TAG_NAME, "h1").text == "404 Not Found"
    browser.get(f"{console}/admin/no-such-page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "404 Not Found"
    shot(browser, "console-404-desktop", backend)

    # phone: the navigation fits, the pages do not grow sideways, wide tables scroll inside their own box
    size(browser, PHONE)
    browser.get(f"{console}/admin/")
    for a in browser.find_elements(By.CSS_SELECTOR, "nav a"):
        box = a.rect
        assert a.is_displayed() and box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], (a.text, box)
    assert page_width(browser) <= PHONE[0]
    shot(browser, "console-phone-navigation", backend)
    for path, name in (("/admin/exchange/outbox?endpoint=registry&state=dead", "outbox-dead"),
                       ("/admin/exchange", "exchange"), ("/admin/audit", "audit")):
        browser.get(console + path)
        assert page_width(browser) <= PHONE[0], path
        box = browser.find_element(By.CSS_SELECTOR, "div.scroll")
        assert box.get_property("scrollWidth") > box.get_property("clientWidth"), path  # it scrolls, not the page
        shot(browser, f"console-phone-{name}", backend)
    browser.get(f"{console}/admin/exchange/outbox?endpoint=registry&state=dead")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#jobs tbody th a"))
    assert page_width(browser) <= PHONE[0]
    shot(browser, "console-phone-job-dead", backend)
