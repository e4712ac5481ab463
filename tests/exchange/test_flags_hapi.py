"""The clinical scenarios pushed to the real EHR peer (HAPI FHIR JPA, our IG loaded, request validation on):
each flagged record arrives with one DetectedIssue per finding, its code and severity as stored, implicating
resources HAPI holds, and the flags come back in a pull."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from domain.test_clinical_scenarios import CASES, PLAN, STORED_PLAN
from exchange.test_outbox_hapi import hapi_runtime
from factories import administration
from peers.hapi_server import HapiServer

from service.app.runtime import Runtime
from service.exchange.client import FhirClient
from service.exchange.outbox import JobQuery
from service.exchange.worker import Worker
from service.mapping.flags import flag_key

FLAG = "https://ketamine-fhir.org/fhir/CodeSystem/ketamine-safety-flag"
SOURCE = "flags-on-hapi"  # the session's HAPI is shared: records of their own


@pytest.fixture
def runtime_on_hapi(database_url: str, tmp_path: Path, hapi_server: HapiServer) -> Iterator[Runtime]:
    runtime = hapi_runtime(database_url, tmp_path, hapi_server.base_url)
    yield runtime
    runtime.engine.dispose()


def _ours(name: str, record: dict[str, Any]) -> dict[str, Any]:
    """The scenario's record under this test's source and a patient of its own (one per scenario)."""
    patient = {**record["patient"], "identifier": {"system": "https://clinic.example/mrn", "value": f"FLAGS-{name}"}}
    return {**record, "source": SOURCE, "patient": patient}


def test_flagged_scenarios_reach_hapi_as_detected_issues(runtime_on_hapi: Runtime, hapi_server: HapiServer) -> None:
    runtime, client = runtime_on_hapi, FhirClient(hapi_server.base_url, timeout=120)
    runtime.intake.submit(PLAN, _ours("plan", STORED_PLAN))  # the plan the esketamine sessions belong to
    # the frequency rows need their course stored first: test_course_frequency runs that through the store
    flagged = {name: case for name, case in CASES.items() if case.flags and not case.course}
    for name, case in flagged.items():
        runtime.intake.submit(case.kind, _ours(name, case.record) | {"external_id": f"{name}"[:60]})
    tally = Worker(runtime.outbox, runtime.endpoints.all()).drain()
    dead = [(j.record_kind, str(j.last_error)) for j in runtime.outbox.list(JobQuery(limit=500))
            if j.state == "dead"]
    assert (tally.done, tally.retry, tally.dead) == (len(flagged) + 1, 0, 0), dead

    for name, case in flagged.items():
        patient_ref = _patient(client, f"FLAGS-{name}")
        issues = list(client.search("DetectedIssue", {"patient": patient_ref, "_count": "50"}))
        arrived = {(c["code"], i.get("severity")) for i in issues for c in i["code"]["coding"]
                   if c["system"] == FLAG}
        assert case.flags <= arrived, (name, arrived)
        for issue in issues:
            for implicated in issue.get("implicated", []):
                kind, _, rid = implicated["reference"].partition("/")
                assert client.read(kind, rid)["id"] == rid  # what the flag is about is on the EHR too


def _patient(client: FhirClient, mrn: str) -> str:
    (patient,) = client.search("Patient", {"identifier": f"https://clinic.example/mrn|{mrn}"})
    return f"Patient/{patient['id']}"


def test_a_withdrawn_flag_reaches_hapi_as_entered_in_error(runtime_on_hapi: Runtime, hapi_server: HapiServer) -> None:
    """A corrected session's stale flag (flags.WITHDRAWN): HAPI holds it under the same id, no longer final."""
    runtime, client = runtime_on_hapi, FhirClient(hapi_server.base_url, timeout=120)
    vitals = [{"at": "2026-03-02T09:20:00-05:00", "phase": "intra", "systolic": 230, "diastolic": 130}]
    runtime.intake.submit(PLAN, _ours("plan", STORED_PLAN))  # the plan the session belongs to
    first = runtime.intake.submit("administration", _ours("withdrawn", administration(vitals=vitals))).record
    flag_id = flag_key("administration", first.content, "elevated-session-blood-pressure").id
    tally = Worker(runtime.outbox, runtime.endpoints.all()).drain()
    assert (tally.done, tally.dead) == (2, 0), [j.last_error for j in runtime.outbox.list(JobQuery(limit=9))]
    assert client.read("DetectedIssue", flag_id)["status"] == "final"
    corrected = [{**vitals[0], "systolic": 150, "diastolic": 90}]
    runtime.intake.replace("administration", first.id, 1, _ours("withdrawn", administration(vitals=corrected)))
    tally = Worker(runtime.outbox, runtime.endpoints.all()).drain()
    assert (tally.done, tally.dead) == (1, 0), [j.last_error for j in runtime.outbox.list(JobQuery(limit=9))]
    withdrawn = client.read("DetectedIssue", flag_id)
    assert withdrawn["status"] == "entered-in-error" and withdrawn["patient"]["reference"] == \
        _patient(client, "FLAGS-withdrawn")
