"""The exchange console in real headless Chromium at desktop (1366×900) and phone (390×844) sizes, against
`ketamine-fhir serve` with the demo data queued for three EHRs played by a small real server (one accepts, one
refuses every Bundle with 422, one is down with 503), delivered by `ketamine-fhir push`: the dashboard shows the
failing endpoint and the dead letters, a dead job's page links the server's error into the Bundle sent, a job
leads to its record and patient, a sign-in lockout is in the audit trail; at phone width the navigation fits and
tables scroll inside their own box. Screenshots go to tests/artifacts/admin/ (named `console-…`)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin.browsing import backend_of, browser_fixture, chromium_installed, follow, shot, sign_in  # noqa: F401 - the fixtures
from admin.support import PASSWORD, USER
from cli.support import kfhir
from factories import assessment, esketamine_plan, esketamine_session
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from support import serving
from support.ehr import ehr_server

DESKTOP, PHONE = (1366, 900), (390, 844)


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
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#record-links a"))  # the course → a record's page
    assert browser.find_elements(By.CSS_SELECTOR, "#resources-table tbody tr")

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

    # sandbox-check: asked to confirm on the endpoint's own page, then run in the background until its report shows
    browser.get(f"{console}/admin/exchange/endpoints/hospital")
    follow(browser, browser.find_element(By.ID, "run-sandbox-check"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Endpoint hospital"
    assert "tick the box" in browser.find_element(By.ID, "sandbox-error").text
    shot(browser, "console-sandbox-confirm-desktop", backend)
    browser.find_element(By.ID, "confirm").click()
    follow(browser, browser.find_element(By.ID, "run-sandbox-check"))
    if browser.find_elements(By.ID, "sandbox-progress"):  # still running: its steps so far, and a refresh
        assert browser.find_elements(By.CSS_SELECTOR, "meta[http-equiv=refresh]")
        shot(browser, "console-sandbox-progress-desktop", backend)
    try:  # headless Chromium may hold the refresh back: the test asks again itself
        WebDriverWait(browser, 120, poll_frequency=2).until(
            lambda d: d.find_elements(By.ID, "sandbox-report") or d.refresh())
    except TimeoutException:
        pytest.fail("no sandbox-check report: " + browser.find_element(By.TAG_NAME, "main").text[-2000:])
    assert "FAILED" in browser.find_element(By.CSS_SELECTOR, "#sandbox-report caption").text  # no metadata there
    shot(browser, "console-sandbox-report-desktop", backend)

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


#: A long esketamine course for one patient: 30 sessions, three of them on one day, with pre/intra/post
#: readings (diastolic and heart rate close together, as at most intra-dose readings), and a PHQ-9 after each.
def _long_course(folder: Path) -> tuple[Path, Path, Path]:
    sessions, scores = [], []
    moments = [f"2026-03-{d:02d}T09:00" for d in range(1, 10)] + \
              [f"2026-03-10T{h:02d}:00" for h in (8, 12, 16)] + [f"2026-03-{d:02d}T09:00" for d in range(11, 29)]
    for n, start in enumerate(moments, 1):
        hour = int(start[11:13])
        vitals = [{"at": f"{start[:11]}{hour - 1:02d}:50:00-05:00", "phase": "pre", "systolic": 128, "diastolic": 82,
                   "heart_rate": 80},
                  {"at": f"{start[:11]}{hour:02d}:40:00-05:00", "phase": "intra", "systolic": 142, "diastolic": 88,
                   "heart_rate": 88},
                  {"at": f"{start[:11]}{hour + 1:02d}:30:00-05:00", "phase": "post", "systolic": 132, "diastolic": 84,
                   "heart_rate": 84}]
        sessions.append(esketamine_session(
            external_id=f"long-{n}", session_number=n, plan_external_id="long-plan", started_at=f"{start}:00-05:00",
            ended_at=f"{start[:14]}10:00-05:00", monitoring_ended_at=f"{start[:11]}{hour + 2:02d}:05:00-05:00",
            ready_to_leave_at=None, vitals=vitals, patient=LONG_PATIENT))
        scores.append(assessment(external_id=f"long-phq-{n}", instrument="phq9", score=max(2, 10 - n // 3),
                                 at=f"{start[:11]}{hour + 3:02d}:00:00-05:00", patient=LONG_PATIENT,
                                 plan_external_id="long-plan"))
    paths = []
    for kind, records in (("treatment-plan", [esketamine_plan(external_id="long-plan", patient=LONG_PATIENT)]),
                          ("administration", sessions), ("assessment", scores)):
        path = folder / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1], paths[2]


LONG_PATIENT = {"identifier": {"system": "https://clinic.example/mrn", "value": "LONG-0001"},
                "name": {"family": "Testpatient", "given": ["Long"]}, "birth_date": "1970-01-01", "sex": "female"}


@pytest.fixture
def courses(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`serve` with the demo data and a long course (many sessions, several on one day)."""
    made = kfhir("admin", "create-user", USER, "--password-stdin", database_url=database_url, cwd=tmp_path,
                 stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert kfhir("seed-demo", database_url=database_url, cwd=tmp_path).returncode == 0
    for path, kind in zip(_long_course(tmp_path), ("treatment-plan", "administration", "assessment"), strict=True):
        imported = kfhir("import", str(path), "--kind", kind, database_url=database_url, cwd=tmp_path)
        assert imported.returncode == 0, imported.stdout + imported.stderr
    with serving.served(["serve"], serving.script_env(database_url), tmp_path, ready="/health") as server:
        yield server.base


#: every text box of every chart, as Chromium lays them out: [chart id, text, left, top, right, bottom]
TEXT_BOXES = """return [...document.querySelectorAll('svg.chart')].flatMap(svg => [...svg.querySelectorAll('text')]
  .filter(t => t.textContent.trim()).map(t => { const r = t.getBoundingClientRect();
    return [svg.id, t.textContent.trim(), r.left, r.top, r.right, r.bottom]; }));"""
#: every marker box per chart and series: [chart id, series, point index, left, top, right, bottom]
MARKER_BOXES = """return [...document.querySelectorAll('svg.chart g.series[data-series]')].flatMap(g =>
  [...g.querySelectorAll('g.point > *')].map((m, i) => { const r = m.getBoundingClientRect();
    return [g.closest('svg').id, g.dataset.series, i, r.left, r.top, r.right, r.bottom]; }));"""


def _overlapping(boxes: list[list[object]], key: int) -> list[tuple[object, object]]:
    """Pairs of boxes of one chart (and different `key`, when key names a column) closer than 2 px: text that
    touches reads as one word (`S7 03-07S10 03-10`), so touching counts as colliding."""
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a[0] != b[0] or (key and a[key] == b[key]):
                continue
            l1, t1, r1, b1 = (float(v) for v in a[-4:])  # type: ignore[arg-type]
            l2, t2, r2, b2 = (float(v) for v in b[-4:])  # type: ignore[arg-type]
            if min(r1, r2) - max(l1, l2) > -2 and min(b1, b2) - max(t1, t2) > 0.5:
                found.append((a[:3], b[:3]))
    return found


def test_charts_draw_gridlines_faint_markers_apart_and_labels_that_never_collide(
        courses: str, browser: WebDriver, database_url: str) -> None:
    backend = backend_of(database_url)
    size(browser, DESKTOP)
    browser.get(f"{courses}/admin/")
    sign_in(browser)
    for value, name in (("DEMO-0002", "demo"), ("LONG-0001", "long")):
        browser.get(f"{courses}/admin/patients/course?system=" +
                    ("https://demo.ketamine-fhir.example/mrn" if name == "demo" else "https://clinic.example/mrn") +
                    f"&value={value}")
        assert browser.find_element(By.TAG_NAME, "h1").text.endswith(f"({value})")
        # gridlines in the faint line colour; thresholds in ink, thicker: the CSS fixed, read as Chromium applies it
        grid = browser.find_element(By.CSS_SELECTOR, "#vitals-chart g.grid line")
        assert grid.value_of_css_property("stroke") == "rgb(213, 218, 224)"
        threshold = browser.find_element(By.CSS_SELECTOR, "svg.chart g.threshold line")
        assert threshold.value_of_css_property("stroke") == "rgb(29, 35, 41)"
        assert float(threshold.value_of_css_property("stroke-width").rstrip("px")) > 1
        texts = browser.execute_script(TEXT_BOXES)
        assert len(texts) > 20 and _overlapping(texts, 0) == [], name
        markers = browser.execute_script(MARKER_BOXES)
        assert _overlapping(markers, 1) == [], name  # no marker of one series hides one of another
        labels = [t[1] for t in texts]
        assert not any(re.fullmatch(r"response ≤ \d+\.\d.*", t) for t in labels)  # integer scores: integer cut-offs
        shot(browser, f"console-course-charts-{name}-desktop", backend)
        browser.find_element(By.LINK_TEXT, "Vital signs").click()
        shot(browser, f"console-course-vitals-{name}-desktop", backend)
        if name == "long":
            phq = [t[1] for t in texts if t[0] == "score-chart-phq9"]
            # three sessions on 03-10, hours apart: each has its guide line, one label speaks for them
            assert len(browser.find_elements(By.CSS_SELECTOR, "#score-chart-phq9 g.guide.session line")) == 30
            assert sum(label in phq for label in ("S10", "S11", "S12")) == 1
            assert "remission ≤ 4 ('none' band, 0–4)" in phq
        size(browser, PHONE)
        browser.refresh()
        assert page_width(browser) <= PHONE[0]
        chart_box = browser.find_element(By.CSS_SELECTOR, "#vitals-chart").rect
        assert chart_box["width"] >= 500  # readable: the chart scrolls in its figure instead of shrinking
        shot(browser, f"console-phone-course-{name}", backend)
        size(browser, DESKTOP)
