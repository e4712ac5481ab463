"""The outbox against the real EHR peer (HAPI FHIR 8.8.0 JPA, our IG loaded, request validation on):
every demo record through the worker, read back and validated, sent again without duplicates, edited
into a new version of the same resource, and pulled back into a fresh database."""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange.conftest import endpoints_file
from factories import assessment
from mapping.support import canonical
from peers.hapi_server import HapiServer
from support.databases import copy_sqlite

from service.app.pull import pull
from service.app.runtime import Runtime
from service.config import Settings
from service.demo import MRN_SYSTEM, demo_records
from service.exchange.client import FhirClient, Written
from service.exchange.outbox import JobQuery, enqueue
from service.exchange.worker import Worker
from service.mapping import default_mapper
from service.mapping.coverage import carried
from service.store.engine import session as transaction
from service.store.records import ListQuery
from service.validation import validate

RECORD_SYSTEM = "https://ketamine-fhir.org/fhir/record/"
KINDS = ("treatment-plan", "administration", "adverse-event", "assessment")


def hapi_runtime(database_url: str, folder: Path, base_url: str) -> Runtime:
    path = endpoints_file(folder, {"name": "hapi", "base_url": base_url, "mode": "transaction", "timeout_s": 120})
    return Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))


@pytest.fixture
def runtime_on_hapi(database_url: str, tmp_path: Path, hapi_server: HapiServer) -> Iterator[Runtime]:
    runtime = hapi_runtime(database_url, tmp_path, hapi_server.base_url)
    yield runtime
    runtime.engine.dispose()


def records_of(runtime: Runtime) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r.kind, r.source, r.external_id): r.content for kind in KINDS
            for r in runtime.store.list(ListQuery(kind=kind, limit=1000))}


def identified(client: FhirClient, resource_type: str, system: str, value: str) -> list[dict[str, Any]]:
    if resource_type == "AdverseEvent":  # R4 gives it one identifier and no search on it: look at every one
        return [r for r in client.search(resource_type, {"_count": "100"})
                if r.get("identifier") == {"system": system, "value": value}]
    return list(client.search(resource_type, {"identifier": f"{system}|{value}"}))


MAIN_TYPE = {"treatment-plan": "CarePlan", "administration": "MedicationAdministration",
             "adverse-event": "AdverseEvent", "assessment": "Observation"}


def assert_once_each(client: FhirClient, keys: list[tuple[str, str, str]]) -> None:
    """Every record's main resource is on the EHR exactly once, found by the record's business identifier."""
    counts = {key: len(identified(client, MAIN_TYPE[key[0]], RECORD_SYSTEM + key[0], f"{key[1]}/{key[2]}"))
              for key in keys}
    assert {k: n for k, n in counts.items() if n != 1} == {}


def assert_one_patient_each(client: FhirClient) -> None:
    """Each of the five demo patients once on the EHR, however often their records were sent."""
    found = {n: len(identified(client, "Patient", MRN_SYSTEM, f"DEMO-{n:04d}")) for n in range(1, 6)}
    assert found == dict.fromkeys(range(1, 6), 1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_demo_data_through_the_worker_to_hapi_and_back(runtime_on_hapi: Runtime, hapi_server: HapiServer,
                                                       tmp_path: Path, sqlite_template: Path) -> None:
    runtime, client = runtime_on_hapi, FhirClient(hapi_server.base_url, timeout=120)
    for kind, record in demo_records():
        runtime.intake.submit(kind, record)
    worker = Worker(runtime.outbox, runtime.endpoints.all())
    tally = worker.drain()
    assert (tally.done, tally.retry, tally.dead) == (44, 0, 0)

    # Read back: each written resource is on HAPI as sent, and valid against our profiles there too.
    jobs = runtime.outbox.list(JobQuery(limit=500))
    problems: list[str] = []
    for job in jobs:
        assert job.written and len(job.written) == len(job.payload["entry"])
        problems += client.verify(job.payload, [Written(w["resourceType"], w["id"], w["version"], w["status"])
                                               for w in job.written])
        for entry in job.written:
            found = client.read(entry["resourceType"], entry["id"])
            errors = [i for i in validate(found)["issue"] if i["severity"] in ("error", "fatal")]
            problems += [f"{entry['resourceType']}/{entry['id']}: {i.get('diagnostics')}" for i in errors]
    assert problems == []
    keys = list(records_of(runtime))
    assert_once_each(client, keys)
    assert_one_patient_each(client)

    # The same records again: updates in place, no second copy of anything.
    with transaction(runtime.engine, write=True) as session:
        for job in jobs:
            enqueue(session, runtime.store.get(job.record_kind, job.record_id), job.payload, runtime.endpoints.all())
    assert worker.drain().done == 44
    assert_once_each(client, keys)
    assert_one_patient_each(client)

    # An edit: a new version of the same resource on HAPI.
    score = runtime.store.list(ListQuery(kind="assessment", limit=1))[0]
    (before,) = identified(client, "Observation", RECORD_SYSTEM + "assessment", f"{score.source}/{score.external_id}")
    runtime.intake.replace("assessment", score.id, score.version, score.content | {"score": score.content["score"] - 1})
    assert worker.drain().done == 1
    (after,) = identified(client, "Observation", RECORD_SYSTEM + "assessment", f"{score.source}/{score.external_id}")
    assert after["id"] == before["id"]
    assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
    assert after["valueInteger"] == score.content["score"] - 1

    # Pull every demo patient back into a fresh database: the same records, and again changes nothing.
    fresh_path = tmp_path / "fresh.db"
    copy_sqlite(sqlite_template, fresh_path)
    (tmp_path / "fresh").mkdir()
    fresh = hapi_runtime(f"sqlite:///{fresh_path}", tmp_path / "fresh", hapi_server.base_url)
    try:
        reports = [pull(client, fresh, f"{MRN_SYSTEM}|DEMO-{n:04d}") for n in range(1, 6)]
        assert sum(len(r.records) for r in reports) == 44
        original, pulled = records_of(runtime), records_of(fresh)
        assert Counter(k[0] for k in pulled) == Counter(k[0] for k in original)
        # Equal to what the mapping specification promises to bring back (it declares the fields it drops).
        mapper = default_mapper()
        promised = {k: canonical(k[0], carried(mapper.specs[k[0]], v)) for k, v in original.items()}
        assert {k: v for k, v in pulled.items() if canonical(k[0], v) != promised[k]} == {}
        again = [pull(client, fresh, f"{MRN_SYSTEM}|DEMO-{n:04d}") for n in range(1, 6)]
        assert sum(r.written for r in again) == 0 and records_of(fresh) == pulled
        assert fresh.outbox.counts() == {"queued": 0, "in_flight": 0, "done": 0, "dead": 0}  # never echoed back
    finally:
        fresh.engine.dispose()



@pytest.mark.parametrize("mode", ["transaction", "batch", "conditional"])
def test_a_patient_named_later_is_named_at_the_ehr(hapi_server: HapiServer, database_url: str, tmp_path: Path,
                                                   mode: str) -> None:
    """Issue 16 step 5 at a real EHR: a first record with only the MRN, a later one with name, birth date and sex,
    then an older one with another name (changes nothing)."""
    path = endpoints_file(tmp_path, {"name": "hapi", "base_url": hapi_server.base_url, "mode": mode,
                                     "timeout_s": 120})
    runtime = Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))
    client, worker = FhirClient(hapi_server.base_url, timeout=120), Worker(runtime.outbox, runtime.endpoints.all())
    mrn = {"system": "https://clinic.example/mrn", "value": f"P5-{mode}-{uuid.uuid4().hex[:8]}"}
    source = f"p5-{uuid.uuid4().hex[:8]}"
    try:
        runtime.intake.submit("assessment", assessment(source=source, patient={"identifier": mrn}))
        named = {"identifier": mrn, "name": {"family": "Okafor", "given": ["Ada"]}, "birth_date": "1971-02-03",
                 "sex": "female"}
        runtime.intake.submit("assessment", assessment(source=source, external_id="asmt-2", patient=named,
                                                       at="2026-03-08T10:00:00+00:00"))
        runtime.intake.submit("assessment", assessment(source=source, external_id="asmt-0", at="2026-01-01T10:00:00Z",
                                                       patient={**named, "name": {"family": "Old"}}))
        assert worker.drain().done == 3
        (held,) = identified(client, "Patient", mrn["system"], mrn["value"])
        assert (held["name"], held["birthDate"], held["gender"]) == (
            [{"family": "Okafor", "given": ["Ada"]}], "1971-02-03", "female")
        # created named: the first record's job, sent after the second was stored, carries the patient as held
        # then (service/exchange/people.py); the later jobs change nothing there
        assert held["meta"]["versionId"] == "1"
    finally:
        runtime.engine.dispose()
