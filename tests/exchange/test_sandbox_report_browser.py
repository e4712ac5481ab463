"""sandbox-check's HTML report in real headless Chromium: a run that passes (against the Medplum peer) and one a
server refused (our facade, an adverse event it cannot accept), each shown as a hospital would open it, and
screenshotted into tests/artifacts/sandbox-check/."""
from __future__ import annotations

from pathlib import Path

from admin.browsing import browser_fixture, chromium_installed  # noqa: F401 - the fixtures
from exchange.test_sandbox import broken_adverse_event
from peers.medplum_server import MedplumServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from support.serving import live_server

from service.exchange.client import FhirClient
from service.exchange.sandbox import run
from service.exchange.sandbox_report import Report

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "sandbox-check"


def open_report(driver: WebDriver, report: Report, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTIFACTS / f"{name}.html"
    page.write_text(report.as_html(), encoding="utf-8")
    driver.get(page.as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 120, 6000))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_passing_report_shows_the_server_and_every_request(browser: WebDriver,
                                                             medplum_server: MedplumServer) -> None:
    report = run(FhirClient(medplum_server.base_url), "batch", cleanup=True)
    open_report(browser, report, "passed-medplum-batch")
    facts = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
             for row in browser.find_elements(By.CSS_SELECTOR, "table.facts tr")}
    assert facts["Server"] == medplum_server.base_url and facts["Mode"] == "batch"
    assert facts["Software"].startswith("Medplum") and facts["FHIR version"] == "4.0.1"
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text == "PASSED: 9 passed, 0 failed, 0 skipped"
    assert len(browser.find_elements(By.CSS_SELECTOR, "section")) == 9
    assert all(c.is_displayed() for c in browser.find_elements(By.CSS_SELECTOR, "table.calls"))


def test_a_refused_push_shows_the_servers_outcome_and_the_remedy(browser: WebDriver, tmp_path: Path) -> None:
    with live_server(f"sqlite:///{tmp_path / 'ehr.db'}", tmp_path, KFHIR_LOG_LEVEL="WARNING") as ehr:
        report = run(FhirClient(ehr.base, ehr.bearer), "transaction", cleanup=True, map_record=broken_adverse_event)
    open_report(browser, report, "refused-facade-transaction")
    refused = browser.find_element(By.ID, "step-push-adverse-event")
    assert refused.find_element(By.CSS_SELECTOR, "h2 .fail").text == "FAIL"
    assert refused.find_element(By.CSS_SELECTOR, ".remedy").is_displayed()
    issues = refused.find_elements(By.CSS_SELECTOR, "table.outcome tbody tr")
    assert any("AdverseEvent.actuality" in row.text for row in issues)
    cleanup = browser.find_element(By.ID, "step-cleanup")
    assert cleanup.find_element(By.CSS_SELECTOR, "h2 .pass").text == "PASS"
    assert browser.find_element(By.CSS_SELECTOR, ".verdict").text.startswith("FAILED:")
