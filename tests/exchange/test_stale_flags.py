"""A safety flag the re-sent record no longer raises is withdrawn (entered-in-error) in the facade and in the Bundle
queued for the EHR, under the identity (record, flag code) it always had; one the record raises again stands again."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange.test_outbox_hapi import hapi_runtime
from factories import administration, treatment_plan

from service.app.runtime import Runtime
from service.exchange.outbox import JobQuery
from service.mapping.flags import flag_key
from service.mapping.identity import RecordKey
from service.validation import default_validator

SESSION, BP_SESSION = "administration", "elevated-session-blood-pressure"
INTRA, LATER = "2026-03-02T09:20:00-05:00", "2026-03-02T09:30:00-05:00"


def vitals(*pairs: tuple[int, int]) -> list[dict[str, Any]]:
    times = [INTRA, LATER]
    return [{"at": times[i], "phase": "intra", "systolic": s, "diastolic": d} for i, (s, d) in enumerate(pairs)]


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    built = hapi_runtime(database_url, tmp_path, "http://ehr.invalid/fhir")  # an endpoint, so jobs are queued
    yield built
    built.engine.dispose()


def stored_flag(runtime: Runtime, flag_id: str) -> dict[str, Any]:
    with runtime.resources.unit() as unit:
        found = unit.get("DetectedIssue", flag_id)
    assert found is not None and found.content is not None
    return found.content


def queued(runtime: Runtime, version: int, flag_id: str) -> dict[str, Any] | None:
    (job,) = [j for j in runtime.outbox.list(JobQuery(limit=50)) if j.record_version == version]
    return next((e["resource"] for e in job.payload["entry"] if e["resource"].get("id") == flag_id), None)


def test_findings_of_one_code_make_one_flag_implicating_each_reading(runtime: Runtime) -> None:
    record = runtime.intake.submit(SESSION, administration(vitals=vitals((230, 130), (190, 95)))).record
    flag = stored_flag(runtime, flag_key(SESSION, record.content, BP_SESSION).id)
    assert flag["severity"] == "high" and len(flag["implicated"]) == 2 and len(flag["evidence"]) == 2
    flags = [f for f in _flags_of(runtime, record.id) if f["code"]["coding"][0]["code"] == BP_SESSION]
    assert [f["id"] for f in flags] == [flag["id"]]


def test_a_flag_the_corrected_record_no_longer_raises_is_withdrawn(runtime: Runtime) -> None:
    first = runtime.intake.submit(SESSION, administration(vitals=vitals((230, 130)))).record
    flag_id = flag_key(SESSION, first.content, BP_SESSION).id
    assert stored_flag(runtime, flag_id)["status"] == "final"

    corrected = runtime.intake.replace(SESSION, first.id, 1, administration(vitals=vitals((150, 90)))).record
    withdrawn = stored_flag(runtime, flag_id)
    assert withdrawn["status"] == "entered-in-error"
    assert withdrawn["detail"].startswith("Withdrawn:") and "230/130" in withdrawn["detail"]
    assert withdrawn["severity"] == "high"  # what it said stays readable
    assert [i for i in default_validator().validate(withdrawn) if i.severity == "error"] == []
    sent = queued(runtime, corrected.version, flag_id)
    assert sent is not None and sent["status"] == "entered-in-error"
    assert all(r["reference"].startswith("urn:uuid:") for r in sent.get("implicated", []))

    # another change before the EHR got version 2: version 3's Bundle (the only one left queued) withdraws it too
    third = runtime.intake.replace(SESSION, first.id, 2, administration(vitals=vitals((150, 90)), dose_mg=34)).record
    assert [j.state for j in runtime.outbox.list(JobQuery(limit=50)) if j.record_version == 2] == ["done"]
    sent = queued(runtime, third.version, flag_id)
    assert sent is not None and sent["status"] == "entered-in-error"

    # the reading back: the same flag (same id) stands again
    again = runtime.intake.replace(SESSION, first.id, 3, administration(vitals=vitals((231, 131)))).record
    assert stored_flag(runtime, flag_id)["status"] == "final"
    assert "231/131" in stored_flag(runtime, flag_id)["detail"]
    sent = queued(runtime, again.version, flag_id)
    assert sent is not None and sent["status"] == "final"


def test_other_records_flags_are_left_alone(runtime: Runtime) -> None:
    other = runtime.intake.submit(SESSION, administration(external_id="adm-2", vitals=vitals((230, 130)))).record
    first = runtime.intake.submit(SESSION, administration(vitals=vitals((230, 130)))).record
    runtime.intake.replace(SESSION, first.id, 1, administration(vitals=vitals((150, 90))))
    assert stored_flag(runtime, flag_key(SESSION, other.content, BP_SESSION).id)["status"] == "final"
    assert stored_flag(runtime, flag_key(SESSION, first.content, BP_SESSION).id)["status"] == "entered-in-error"


def _flags_of(runtime: Runtime, record_id: str) -> list[dict[str, Any]]:
    (job,) = [j for j in runtime.outbox.list(JobQuery(limit=50)) if j.record_id == record_id]
    return [e["resource"] for e in job.payload["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]


def test_a_screening_flag_of_an_item_no_longer_sent_is_withdrawn(runtime: Runtime) -> None:
    """The plan mapping's own flags (one per interacting medication) are withdrawn the same way."""
    lorazepam = {"interacting_medications": [{"name": "lorazepam", "class": "benzodiazepine"}]}
    first = runtime.intake.submit("treatment-plan", treatment_plan(screening=lorazepam)).record
    flag_id = RecordKey("treatment-plan", "clinic-a", first.external_id, "interaction", 0).id
    assert stored_flag(runtime, flag_id)["status"] == "final"
    runtime.intake.replace("treatment-plan", first.id, 1, treatment_plan(screening={"interacting_medications": []}))
    assert stored_flag(runtime, flag_id)["status"] == "entered-in-error"
