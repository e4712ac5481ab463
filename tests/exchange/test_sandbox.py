"""`ketamine-fhir sandbox-check` against a live FHIR server: our own facade after the demo seed, playing the EHR.

The facade already holds the demo data (whose prescriber has NPI 9990000017, the number sandbox-check once
reused), so these runs show the check's records meet nothing on a server in use, in every delivery mode, twice in
a row on the same server. The peers (HAPI FHIR, Medplum): test_sandbox_peers.py.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cli.support import kfhir
from support.serving import LiveServer, live_server

from service.exchange.auth import Bearer
from service.exchange.client import FhirClient
from service.exchange.sandbox import STEPS, run
from service.exchange.sandbox_report import Report, Step
from service.mapping import map_record

ALL_STEPS = [*STEPS, "cleanup"]


@pytest.fixture(scope="module")
def ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("ehr")
    url = f"sqlite:///{folder / 'ehr.db'}"
    assert kfhir("db", "upgrade", database_url=url, cwd=folder).returncode == 0
    seeded = kfhir("seed-demo", database_url=url, cwd=folder)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    with live_server(url, folder, KFHIR_LOG_LEVEL="WARNING") as live:
        yield live


@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_every_step_passes_twice_in_a_row_on_a_server_holding_the_demo_data(ehr: LiveServer, mode: str) -> None:
    first = run(FhirClient(ehr.base, ehr.bearer), mode, cleanup=True)
    again = run(FhirClient(ehr.base, ehr.bearer), mode, cleanup=True)
    for report in (first, again):
        assert [s.name for s in report.steps] == ALL_STEPS
        assert report.passed and {s.status for s in report.steps} == {"pass"}, report.table()
        assert report.step("push again: no duplicates").message.endswith("one Patient, one Practitioner")
    assert first.run_id != again.run_id
    demo = requests.get(f"{ehr.base}/Practitioner", params={"identifier": "http://hl7.org/fhir/sid/us-npi|9990000017"},
                        headers=ehr.headers, timeout=30).json()
    assert [e["resource"]["name"][0]["text"] for e in demo["entry"]] == ["Dr. Demo Prescriber"]  # untouched


def test_each_step_is_reported_as_it_starts_and_ends_with_its_requests(ehr: LiveServer) -> None:
    seen: list[tuple[str, str]] = []

    def progress(report: Report, step: Step) -> None:
        seen.append((step.name, step.status))

    report = run(FhirClient(ehr.base, ehr.bearer), "transaction", cleanup=True, progress=progress)
    assert seen == [(name, status) for name in ALL_STEPS for status in ("running", "pass")]
    assert report.software.startswith("Ketamine FHIR Bridge") and report.fhir_version == "4.0.1"
    capabilities = report.step("capabilities").calls
    assert [(c.method, c.url, c.status) for c in capabilities] == [("GET", f"{ehr.base}/metadata", 200)]
    pushed = report.step("push treatment-plan").calls
    assert [(c.method, c.url, c.status) for c in pushed] == [("POST", ehr.base, 200)] and pushed[0].ms > 0
    deleted = report.step("cleanup").calls
    assert {c.method for c in deleted} == {"DELETE"} and len(deleted) == 15
    assert deleted[-1].url.rsplit("/", 2)[-2] in ("Patient", "Practitioner")  # referrers first, people last


def broken_adverse_event(kind: str, record: dict[str, Any]) -> Any:
    """The adverse event's resource with a status no server accepts: the server refuses that push."""
    mapped = map_record(kind, record)
    if kind == "adverse-event":
        for entry in mapped.bundle["entry"]:
            if entry["resource"]["resourceType"] == "AdverseEvent":
                entry["resource"]["actuality"] = "not-a-code"
    return mapped


def test_a_refused_push_shows_the_servers_outcome_and_a_remedy_and_cleanup_still_runs(ehr: LiveServer) -> None:
    client = FhirClient(ehr.base, ehr.bearer)
    report = run(client, "transaction", cleanup=True, map_record=broken_adverse_event)
    refused = report.step("push adverse-event")
    assert refused.status == "fail" and refused.failure == "validation" and "remedy" not in refused.message
    assert refused.message.startswith(f"POST {ehr.base}: 422 error:") and "AdverseEvent" in refused.message
    assert refused.outcome and any("actuality" in str(i) for i in refused.outcome["issue"])
    assert "OperationOutcome" in refused.remedy or "refused the content" in refused.remedy
    assert report.step("push again: no duplicates").status == "skip"
    assert report.step("read back and compare").status == "pass"   # what did get written is read back
    assert report.step("cleanup").status == "pass" and not report.passed
    patients = list(client.search("Patient", {"identifier": f"https://ketamine-fhir.org/fhir/sid/sandbox-check|"
                                                            f"SANDBOX-{report.run_id}"}))
    assert patients == []   # deleted after the failure too


def test_the_cli_writes_html_and_json_reports_that_say_what_was_checked(ehr: LiveServer, tmp_path: Path) -> None:
    for name in ("report.html", "report.json"):
        done = kfhir("sandbox-check", "--base-url", ehr.base, "--bearer-token", ehr.token, "--mode", "batch",
                     "--cleanup", "--report", tmp_path / name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "PASSED: 9 passed, 0 failed, 0 skipped" in done.stdout and "mode batch" in done.stdout
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<script" not in page and "src=" not in page
    for fact in ("Server", ehr.base, "Software", "Ketamine FHIR Bridge", "FHIR version", "4.0.1", "Date (UTC)",
                 "Mode", "batch", "sandbox-check", "PASSED"):
        assert fact in page
    assert f"<td>DELETE</td><td><code>{ehr.base}/Patient/" in page
    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["passed"] is True and data["mode"] == "batch" and data["fhir_version"] == "4.0.1"
    assert data["started_at"].endswith("+00:00") and data["our_version"] and len(data["run_id"]) == 12
    assert all(c["status"] for s in data["steps"] for c in s["calls"]) and data["steps"][0]["calls"]


def test_a_server_that_is_not_there_fails_the_first_step_and_skips_the_rest(tmp_path: Path) -> None:
    json_report = tmp_path / "report.json"
    done = kfhir("sandbox-check", "--base-url", "http://127.0.0.1:9/fhir", "--cleanup", "--report", json_report)
    assert done.returncode == 1
    steps = json.loads(json_report.read_text(encoding="utf-8"))["steps"]
    assert steps[0]["status"] == "fail" and "connection failed" in steps[0]["message"]
    assert steps[0]["failure"] == "transport" and "base URL" in steps[0]["remedy"]
    assert {s["status"] for s in steps[1:]} == {"skip"}
    assert steps[-1]["message"] == "skipped: nothing was written"


def test_a_refused_token_is_an_auth_failure_with_its_remedy_and_nothing_is_left_behind(ehr: LiveServer) -> None:
    report = run(FhirClient(ehr.base, Bearer("kfhir_not_a_key")), "transaction", cleanup=True)
    refused = [s for s in report.steps if s.status == "fail"]
    assert refused and {s.failure for s in refused} == {"auth"}, report.table()
    assert all(s.calls[-1].status == 401 and "credentials" in s.remedy for s in refused)
    assert report.step("push administration").status == "skip"
    assert report.step("cleanup").message == "skipped: nothing was written" and not report.passed
