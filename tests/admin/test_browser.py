"""The console in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) against
`ketamine-fhir serve` on loopback: sign in, read a mapping and a profile, try a record, sign out.

Screenshots of each page go to tests/artifacts/admin/. No network: Chromium's background traffic is off.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin.browsing import START_TIMEOUT, backend_of, browser_fixture, chromium_installed, follow, shot, sign_in  # noqa: F401 - the fixtures
from admin.support import PASSWORD, USER
from cli.support import kfhir
from factories import administration
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from support import serving

from service.exchange.outbox import Failure, Outbox
from service.store.engine import make_engine

#: The EHR endpoint the live server queues records for; nothing listens there (no job is ever sent).
ENDPOINTS = "endpoints:\n  - name: hospital\n    base_url: http://127.0.0.1:9/fhir\n"


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`ketamine-fhir serve` on a free loopback port, with an admin account made by the CLI, the demo data
    loaded and an endpoints file, so the outbox holds the demo records' jobs."""
    made = kfhir("admin", "create-user", USER, "--password-stdin", database_url=database_url, cwd=tmp_path,
                 stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    (tmp_path / "endpoints.yaml").write_text(ENDPOINTS, encoding="utf-8")
    endpoints = str(tmp_path / "endpoints.yaml")
    seeded = kfhir("seed-demo", database_url=database_url, cwd=tmp_path, KFHIR_ENDPOINTS_FILE=endpoints)
    assert seeded.returncode == 0, seeded.stderr
    env = serving.script_env(database_url, KFHIR_ENDPOINTS_FILE=endpoints)
    with serving.served(["serve"], env, tmp_path, ready="/health") as server:
        yield server.base


def test_an_admin_signs_in_reviews_a_mapping_and_a_profile_tries_a_record_and_signs_out(
        live_server: str, browser: WebDriver, database_url: str) -> None:
    backend = backend_of(database_url)
    browser.get(f"{live_server}/admin/mappings/administration")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    shot(browser, "sign-in", backend)
    sign_in(browser, "not the password")
    assert "Wrong username or password." in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    sign_in(browser)

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
    invalid = browser.find_element(By.CSS_SELECTOR, "#examples ~ table a[href*='/invalid/']")
    follow(browser, invalid)
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Example examples/invalid/")
    shot(browser, "example-invalid", backend)

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


def _bury_one(database_url: str) -> int:
    """Make one queued job a dead letter, as a worker would after a 422 from the EHR."""
    engine = make_engine(database_url)
    try:
        outbox = Outbox(engine)
        (job,) = outbox.claim("browser-test", ["hospital"], limit=1)
        outcome = {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "diagnostics": "CarePlan.subject: unknown patient"}]}
        assert outbox.bury("browser-test", job.pk, Failure("POST http://127.0.0.1:9/fhir: 422", 422, outcome))
        return job.pk
    finally:
        engine.dispose()


def test_an_admin_follows_a_course_reads_mapping_history_and_retries_a_dead_letter(
        live_server: str, browser: WebDriver, database_url: str) -> None:
    backend = backend_of(database_url)
    dead = _bury_one(database_url)
    browser.get(f"{live_server}/admin/")
    sign_in(browser)

    # patients: search by part of the MRN, open the course, the charts are drawn with their data points
    follow(browser, browser.find_element(By.LINK_TEXT, "Patients"))
    browser.find_element(By.ID, "identifier").send_keys("demo-000")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.search button"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#patients tbody tr")) == 5
    shot(browser, "patients", backend)
    follow(browser, browser.find_element(By.LINK_TEXT, "DEMO-0002"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Course of Bravo Testpatient (DEMO-0002)"
    vitals = browser.find_element(By.ID, "vitals-chart")
    assert vitals.size["width"] > 400 and vitals.size["height"] > 100  # laid out, not just present
    points = vitals.find_elements(By.CSS_SELECTOR, "g.point")
    assert len(points) == 4 * 3 * 2  # 4 sessions, 3 readings, systolic + diastolic (heart rate: its own chart)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#heart-rate-chart g.point")) == 4 * 3
    assert {p.get_attribute("data-value") for p in points} >= {"168", "98"}  # the transient BP rise
    assert vitals.find_element(By.CSS_SELECTOR, "g.adverse-event text").text == "AE: hypertension"
    madrs = browser.find_element(By.ID, "score-chart-madrs")
    assert [p.get_attribute("data-value") for p in madrs.find_elements(By.CSS_SELECTOR, "g.point")] == ["30", "22"]
    assert madrs.find_element(By.CSS_SELECTOR, "g.threshold.response text").text.startswith("response ≤ 15")
    shot(browser, "patient-course", backend)
    browser.find_element(By.LINK_TEXT, "Vital signs").click()  # an in-page link: the charts in view
    WebDriverWait(browser, START_TIMEOUT).until(lambda d: d.current_url.endswith("#vitals"))
    shot(browser, "patient-course-charts", backend)

    # mappings: the history of a mapping, and the changes of its latest version
    follow(browser, browser.find_element(By.LINK_TEXT, "Mappings"))
    follow(browser, browser.find_elements(By.LINK_TEXT, "versions and changes")[0])
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("History of the")
    assert browser.find_elements(By.CSS_SELECTOR, "#versions tr.current")
    shot(browser, "mapping-history", backend)

    # exchange: endpoints, the dead letters in the outbox, one job's OperationOutcome, retry it
    follow(browser, browser.find_element(By.LINK_TEXT, "Exchange"))
    assert browser.find_element(By.CSS_SELECTOR, "#endpoints th a").text == "hospital"
    shot(browser, "exchange", backend)
    follow(browser, browser.find_element(By.LINK_TEXT, "hospital"))
    shot(browser, "endpoint", backend)
    follow(browser, browser.find_element(By.LINK_TEXT, "1 dead"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    assert len(rows) == 1 and rows[0].find_element(By.TAG_NAME, "a").text == str(dead)
    shot(browser, "outbox-dead", backend)
    follow(browser, rows[0].find_element(By.TAG_NAME, "a"))
    assert "unknown patient" in browser.find_element(By.CSS_SELECTOR, "table.outcome").text
    shot(browser, "job-dead", backend)
    follow(browser, browser.find_element(By.ID, "retry"))
    assert browser.find_element(By.CSS_SELECTOR, "[role=status]").text.startswith("Queued again")
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Outbox job {dead}: retrying after an error"
    shot(browser, "job-retried", backend)

    # audit: the course this admin opened is in the trail, by a hash of the patient, never the MRN
    follow(browser, browser.find_element(By.LINK_TEXT, "Audit"))
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert any("admin:alice" in r and "patient course" in r for r in rows)
    assert any("outbox job" in r for r in rows) and not any("DEMO-0002" in r for r in rows)
    shot(browser, "audit", backend)
