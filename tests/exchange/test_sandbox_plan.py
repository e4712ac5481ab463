"""sandbox-check's parts that need no server: the run's records, the plan against a statement, the order of
deletion, batch waves, failure classes and the report's rendering."""
from __future__ import annotations

import pytest

from service.exchange.client import Capabilities, FhirClient, FhirError, batch_waves
from service.exchange.sandbox import Skip, _Run, deletion_order, failure_class, short_message
from service.exchange.sandbox_report import Call, Report, Step
from service.exchange.scenario import Scenario
from service.mapping import map_record


def test_each_run_has_records_of_its_own() -> None:
    one, two = Scenario("aaaaaaaaaaaa"), Scenario("bbbbbbbbbbbb")
    assert one.mrn != two.mrn and one.prescriber_identifier != two.prescriber_identifier
    assert "us-npi" not in one.prescriber_identifier["system"]   # no NPI-shaped number can be somebody's
    ids = [{e["request"].get("ifNoneExist") or e["request"]["url"] for k, r in s.records()
            for e in map_record(k, r).bundle["entry"]} for s in (one, two)]
    assert len(ids[0]) == 15 and ids[0].isdisjoint(ids[1])   # 13 resource ids and the two people's identifiers


def test_referrers_are_deleted_before_what_they_refer_to() -> None:
    written = {"Patient/p": set(), "Encounter/e": {"Patient/p"}, "MedicationAdministration/m": {"Encounter/e",
               "Patient/p"}, "AdverseEvent/a": {"MedicationAdministration/m", "Patient/p"}, "Observation/o": set()}
    order = deletion_order(written)
    assert sorted(order) == sorted(written)
    for key, targets in written.items():
        assert all(order.index(key) < order.index(t) for t in targets)


def test_a_batch_goes_in_waves_that_never_refer_within_themselves() -> None:
    kind, record = Scenario("cccccccccccc").records()[0]
    entries = [e for e in map_record(kind, record).bundle["entry"] if not e["request"].get("ifNoneExist")]
    waves = batch_waves(entries)
    placed: set[str] = set()
    for wave in waves:
        names = {e["fullUrl"] for e in wave}
        for entry in wave:
            assert not any(r in names for r in str(entry["resource"]).split("'") if r.startswith("urn:uuid:"))
        placed |= names
    assert len(waves) == 3 and placed == {e["fullUrl"] for e in entries}   # Condition; Goal, request; CarePlan


@pytest.mark.parametrize(("status", "code", "step", "expected"), [
    (None, None, "capabilities", "transport"), (401, "login", "push treatment-plan", "auth"),
    (403, "forbidden", "push treatment-plan", "auth"), (405, "not-supported", "push treatment-plan", "unsupported"),
    (400, "not-supported", "push treatment-plan", "unsupported"), (409, "conflict", "cleanup", "integrity"),
    (409, "conflict", "push treatment-plan", "conflict"), (412, "conflict", "push treatment-plan", "conflict"),
    (422, "invalid", "push treatment-plan", "validation"), (400, "structure", "push treatment-plan", "validation"),
    (503, "transient", "push treatment-plan", "server"), (429, "throttled", "push treatment-plan", "server")])
def test_failures_are_classed_for_their_remedy(status: int | None, code: str | None, step: str, expected: str) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]} if code else None
    assert failure_class(FhirError("x", status, outcome), step) == expected


def test_a_reference_to_nothing_is_a_referential_integrity_failure() -> None:
    outcome = {"issue": [{"severity": "error", "code": "processing",
                          "diagnostics": "Resource Patient/9 not found, specified in path: Encounter.subject"}]}
    assert failure_class(FhirError("x", 400, outcome), "push administration") == "integrity"


def test_the_message_names_the_request_and_the_first_error_only() -> None:
    outcome = {"issue": [{"severity": "warning", "diagnostics": "w"}, {"severity": "error", "diagnostics": "first"},
                         {"severity": "error", "diagnostics": "second"}]}
    text = short_message(FhirError("long", 422, outcome), Call("POST", "http://h/fhir", 422, 3.0))
    assert text == "POST http://h/fhir: 422 error: first (+1 more errors)"


def plan(caps: Capabilities, mode: str) -> _Run:
    run = _Run(FhirClient("http://127.0.0.1:9/fhir"), mode, False, map_record, None, Scenario("dddddddddddd"))
    run.caps = caps
    return run


def test_what_the_statement_does_not_offer_is_skipped_with_the_reason() -> None:
    bundle = map_record(*Scenario("dddddddddddd").records()[0]).bundle
    every = {t: {"create", "update", "read", "search-type", "delete"} for t in
             ("Patient", "Practitioner", "CarePlan", "Condition", "Goal", "MedicationRequest")}
    with pytest.raises(Skip, match="does not offer transaction .*try --mode batch, conditional"):
        plan(Capabilities("4.0.1", transaction=False, batch=False, types=every), "transaction")._require_push(bundle)
    plan(Capabilities("4.0.1", transaction=True, batch=False, types=every), "batch")._require_push(bundle)
    no_goal = every | {"Goal": {"read"}}
    with pytest.raises(Skip, match="does not offer update on Goal"):
        plan(Capabilities("4.0.1", transaction=True, batch=True, types=no_goal), "conditional")._require_push(bundle)
    plan(Capabilities("4.0.1", transaction=True, batch=True, types={}), "conditional")._require_push(bundle)


def test_the_html_report_renders_the_outcome_and_the_remedy_escaped() -> None:
    report = Report("http://h/fhir", "batch", True, "2026-12-05T01:00:00+00:00", "eeeeeeeeeeee", "1.2.3",
                    "Some <Server> 1", "4.0.1")
    report.steps = [Step("push treatment-plan", "fail", 0.5, "POST http://h/fhir: 422 error: <bad>",
                         [Call("POST", "http://h/fhir", 422, 12.0)],
                         {"issue": [{"severity": "error", "code": "invalid", "diagnostics": "Goal <x>",
                                     "expression": ["Goal.target"]}]}, "validation")]
    page = report.as_html()
    assert "Some &lt;Server&gt; 1" in page and "&lt;bad&gt;" in page and "<bad>" not in page
    assert "<td>error</td><td>invalid</td><td>Goal &lt;x&gt;</td><td>Goal.target</td>" in page
    assert "Remedy:</strong> The server refused the content" in page
    assert "FAILED: 0 passed, 1 failed, 0 skipped" in page and "<td>POST</td>" in page
    assert report.as_dict()["steps"][0]["remedy"].startswith("The server refused the content")
