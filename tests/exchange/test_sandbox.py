"""`ketamine-fhir sandbox-check` against a live FHIR server (our facade, playing the EHR or sandbox)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.support import kfhir
from support.serving import LiveServer, live_server

from service.exchange.client import FhirClient
from service.exchange.sandbox import run


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(f"sqlite:///{tmp_path / 'ehr.db'}", tmp_path, KFHIR_LOG_LEVEL="WARNING") as live:
        yield live


@pytest.mark.parametrize("mode", ["transaction", "conditional"])
def test_every_step_passes_against_a_conforming_server(ehr: LiveServer, mode: str) -> None:
    report = run(FhirClient(ehr.base, ehr.bearer), mode, cleanup=True)
    assert [s.name for s in report.steps] == [
        "capabilities", "patient by identifier", "push treatment-plan", "push administration",
        "push adverse-event", "read back and compare", "search by patient with paging", "cleanup"]
    assert report.passed, report.table()


def test_the_cli_prints_the_table_and_writes_a_self_contained_html_report(ehr: LiveServer, tmp_path: Path) -> None:
    html_report = tmp_path / "report.html"
    done = kfhir("sandbox-check", "--base-url", ehr.base, "--bearer-token", ehr.token, "--report", html_report)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all steps passed" in done.stdout and "PASS" in done.stdout
    page = html_report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "All steps passed" in page and "<script" not in page
    assert "http" not in page.replace(ehr.base, "")  # nothing loaded from elsewhere


def test_a_server_that_is_not_there_fails_the_first_step_and_skips_the_rest(tmp_path: Path) -> None:
    json_report = tmp_path / "report.json"
    done = kfhir("sandbox-check", "--base-url", "http://127.0.0.1:9/fhir", "--report", json_report)
    assert done.returncode == 1
    steps = json.loads(json_report.read_text(encoding="utf-8"))["steps"]
    assert steps[0]["status"] == "fail" and "connection failed" in steps[0]["message"]
    assert {s["status"] for s in steps[1:]} == {"skip"}
