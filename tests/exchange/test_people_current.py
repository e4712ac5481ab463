"""People kept current (issue 16 step 5, service/app/people.py): a later record with more or newer demographics
updates the stored Patient or Practitioner (a new version here, a conditional update in the outbox), never
blanks a known value, and the newest record by clinical time wins whatever order the records arrive in."""
from __future__ import annotations

import itertools
from typing import Any

import pytest
from factories import NPI, administration, assessment, treatment_plan
from sqlalchemy import select

from service.app.runtime import Runtime
from service.store.engine import session as transaction
from service.store.models import OutboxJobRow

BARE = {"identifier": {"system": "https://clinic.example/mrn", "value": "MRN-P5"}}
FULL = {**BARE, "name": {"family": "Okafor", "given": ["Ada"]}, "birth_date": "1971-02-03", "sex": "female"}


def person(runtime: Runtime, resource_type: str, system: str, value: str) -> dict[str, Any]:
    from service.search.query import parse

    with runtime.resources.unit() as unit:
        found, _ = unit.search(parse(resource_type, [("identifier", f"{system}|{value}")]))
    assert len(found) == 1, found
    return found[0].content or {}


def patient(runtime: Runtime, mrn: str = "MRN-P5") -> dict[str, Any]:
    return person(runtime, "Patient", "https://clinic.example/mrn", mrn)


def people_requests(runtime: Runtime, record_id: str) -> list[dict[str, str]]:
    with transaction(runtime.engine) as session:
        job = session.scalars(select(OutboxJobRow).where(OutboxJobRow.record_id == record_id,
                                                         OutboxJobRow.endpoint == "ehr")).one()
        return [e["request"] for e in job.payload["entry"]
                if e["resource"]["resourceType"] in ("Patient", "Practitioner")]


def test_a_later_record_with_demographics_names_the_patient_here_and_at_the_ehr(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment(patient=BARE))
    assert "name" not in patient(exchange_runtime)
    made = exchange_runtime.intake.submit("assessment", assessment(external_id="asmt-2", patient=FULL,
                                                                   at="2026-03-08T10:00:00+00:00")).record
    now = patient(exchange_runtime)
    assert now["meta"]["versionId"] == "2"
    assert (now["name"], now["birthDate"], now["gender"]) == ([{"family": "Okafor", "given": ["Ada"]}],
                                                              "1971-02-03", "female")
    (request,) = people_requests(exchange_runtime, made.id)  # the EHR is told by a conditional update
    assert request == {"method": "PUT", "url": "Patient?identifier=https%3A%2F%2Fclinic.example%2Fmrn%7CMRN-P5"}


def test_a_later_record_without_demographics_blanks_nothing(exchange_runtime: Runtime) -> None:
    exchange_runtime.intake.submit("assessment", assessment(patient=FULL))
    made = exchange_runtime.intake.submit("assessment", assessment(external_id="asmt-2", patient=BARE,
                                                                   at="2026-03-08T10:00:00+00:00")).record
    now = patient(exchange_runtime)
    assert now["meta"]["versionId"] == "1" and now["name"] == [{"family": "Okafor", "given": ["Ada"]}]
    (request,) = people_requests(exchange_runtime, made.id)  # nothing changed: the conditional create finds it
    assert request["method"] == "POST" and request["ifNoneExist"]
    with transaction(exchange_runtime.engine) as session:  # and what the EHR would create carries the name
        job = session.scalars(select(OutboxJobRow).where(OutboxJobRow.record_id == made.id)).first()
        assert job is not None
        sent = next(e["resource"] for e in job.payload["entry"] if e["resource"]["resourceType"] == "Patient")
    assert sent["name"] == [{"family": "Okafor", "given": ["Ada"]}]


def test_an_older_record_arriving_late_fills_gaps_but_changes_no_newer_value(runtime: Runtime) -> None:
    runtime.intake.submit("assessment", assessment(at="2026-03-08T10:00:00+00:00",
                                                   patient={**BARE, "name": {"family": "Okafor-Reyes",
                                                                             "given": ["Ada"]}}))
    runtime.intake.submit("assessment", assessment(external_id="asmt-old", at="2026-01-05T10:00:00+00:00",
                                                   patient={**FULL, "sex": "unknown"}))
    now = patient(runtime)
    assert now["name"] == [{"family": "Okafor-Reyes", "given": ["Ada"]}]  # the March name stays
    assert (now["birthDate"], now["gender"]) == ("1971-02-03", "unknown")  # gaps filled from January


def test_the_record_keeps_its_own_person_as_sent(runtime: Runtime) -> None:
    """The person merged for the store is a copy: the record, as answered and as stored, says what was sent (the
    merge once wrote the newer stored name into the older record's own answer)."""
    runtime.intake.submit("assessment", assessment(at="2026-03-08T10:00:00+00:00",
                                                   patient={**BARE, "name": {"family": "Okafor-Reyes",
                                                                             "given": ["Ada"]}}))
    made = runtime.intake.submit("assessment", assessment(external_id="asmt-old", at="2026-01-05T10:00:00+00:00",
                                                          patient=FULL)).record
    assert made.content["patient"]["name"] == {"family": "Okafor", "given": ["Ada"]}
    assert runtime.intake.get("assessment", made.id).content["patient"]["name"] == {"family": "Okafor",
                                                                                    "given": ["Ada"]}
    assert patient(runtime)["name"] == [{"family": "Okafor-Reyes", "given": ["Ada"]}]


SENT = [  # (record time, demographics): the newest giving each field must win, whatever the arrival order
    ("2026-01-05T10:00:00+00:00", {"name": {"family": "Early", "given": ["Ada"]}, "sex": "female"}),
    ("2026-02-05T10:00:00+00:00", {"birth_date": "1971-02-03"}),
    ("2026-03-05T10:00:00+00:00", {"name": {"family": "Late", "given": ["Ada", "B."]}}),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(SENT)))))
def test_the_current_patient_does_not_depend_on_arrival_order(runtime: Runtime, order: tuple[int, ...]) -> None:
    for i in order:
        at, fields = SENT[i]
        runtime.intake.submit("assessment", assessment(external_id=f"asmt-{i}", at=at, patient={**BARE, **fields}))
    now = patient(runtime)
    assert (now["name"], now["birthDate"], now["gender"]) == ([{"family": "Late", "given": ["Ada", "B."]}],
                                                              "1971-02-03", "female")


def test_the_prescriber_and_the_session_performer_are_kept_current(runtime: Runtime) -> None:
    runtime.intake.submit("treatment-plan", treatment_plan(prescriber={"identifier": NPI, "name": "Dr. A. Old"}))
    runtime.intake.submit("administration", administration(performer={"identifier": NPI}))
    assert person(runtime, "Practitioner", NPI["system"], NPI["value"])["name"] == [{"text": "Dr. A. Old"}]
    runtime.intake.submit("administration", administration(external_id="adm-2", session_number=2,
                                                           started_at="2026-03-05T09:00:00-05:00",
                                                           ended_at="2026-03-05T09:40:00-05:00",
                                                           performer={"identifier": NPI, "name": "Dr. A. New"}))
    now = person(runtime, "Practitioner", NPI["system"], NPI["value"])
    assert now["name"] == [{"text": "Dr. A. New"}] and now["meta"]["versionId"] == "2"


def test_a_job_sends_the_patient_as_held_when_it_is_sent(exchange_runtime: Runtime) -> None:
    """A job written before a newer record changed the patient sends the newer patient, as a conditional update
    (the EHR may hold the older one by then); a job whose patient did not change since is sent as written."""
    from service.exchange.people import current_people

    early = exchange_runtime.intake.submit("assessment", assessment(patient={**BARE, "name": {"family": "Early"}}))
    exchange_runtime.intake.submit("assessment", assessment(external_id="asmt-2", at="2026-03-08T10:00:00+00:00",
                                                            patient=FULL))
    with transaction(exchange_runtime.engine) as session:
        jobs = list(session.scalars(select(OutboxJobRow).where(OutboxJobRow.endpoint == "ehr")
                                    .order_by(OutboxJobRow.pk)))
        first, second = (job.payload for job in jobs)
    assert jobs[0].record_id == early.record.id
    sent = current_people(exchange_runtime.engine, first)
    (entry,) = [e for e in sent["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert entry["resource"]["name"] == [{"family": "Okafor", "given": ["Ada"]}]
    assert entry["request"] == {"method": "PUT",
                                "url": "Patient?identifier=https%3A%2F%2Fclinic.example%2Fmrn%7CMRN-P5"}
    assert [e for e in sent["entry"] if e["resource"]["resourceType"] != "Patient"] == \
        [e for e in first["entry"] if e["resource"]["resourceType"] != "Patient"]  # the rest as written
    assert current_people(exchange_runtime.engine, second) == second


def test_our_person_is_laid_over_the_ehrs_and_blanks_nothing_it_holds() -> None:
    """service/exchange/people.merge: our elements replace theirs; identifiers, other names, the name's prefix,
    their tags and everything we do not send are kept; the narrative goes when data changes."""
    from service.exchange.people import merge

    theirs = {"resourceType": "Patient", "id": "77", "meta": {"versionId": "4", "tag": [{"system": "s", "code": "x"}]},
              "text": {"status": "generated", "div": "<div>Ms Ada Okafor</div>"},
              "identifier": [{"system": "h", "value": "1"}, {"system": "m", "value": "2"}],
              "name": [{"use": "official", "family": "Okafor", "given": ["Ada"], "prefix": ["Ms"]},
                       {"use": "maiden", "family": "Eze"}],
              "gender": "female", "telecom": [{"system": "phone", "value": "1"}]}
    ours = {"resourceType": "Patient", "meta": {"tag": [{"system": "k", "code": "v"}]},
            "identifier": [{"system": "m", "value": "2"}], "name": [{"family": "Okafor-Reyes", "given": ["Ada"]}],
            "birthDate": "1971-02-03"}
    assert merge(theirs, ours) == {
        "resourceType": "Patient", "id": "77", "meta": {"tag": [{"system": "s", "code": "x"}, {"system": "k", "code": "v"}]},
        "identifier": theirs["identifier"],
        "name": [{"use": "official", "prefix": ["Ms"], "family": "Okafor-Reyes", "given": ["Ada"]},
                 {"use": "maiden", "family": "Eze"}],
        "gender": "female", "telecom": theirs["telecom"], "birthDate": "1971-02-03"}
    same = {k: v for k, v in ours.items() if k != "birthDate"} | {"name": [{"family": "Okafor", "given": ["Ada"]}]}
    assert merge(theirs, same) is theirs  # nothing new: their resource as it is, narrative and all


def test_an_ehr_change_older_than_a_record_giving_the_field_loses_but_fills_gaps(runtime: Runtime) -> None:
    """service/app/people.from_ehr, the pull's rule: the EHR's name dated February loses to a March record's name;
    its birth date, which no record gives, is taken; the same resource undated takes only the birth date too."""
    from service.app.people import from_ehr

    runtime.intake.submit("assessment", assessment(at="2026-03-08T10:00:00+00:00", patient={
        **BARE, "name": {"family": "Okafor", "given": ["Ada"]}}))
    held = patient(runtime)
    theirs = {**held, "id": "ehr-1", "meta": {"versionId": "7", "lastUpdated": "2026-02-01T09:00:00.000+00:00"},
              "name": [{"family": "Other", "given": ["Ada"]}], "birthDate": "1971-02-03"}
    for dated in (theirs, {k: v for k, v in theirs.items() if k != "meta"}):
        with runtime.resources.unit() as unit:
            updated = from_ehr(unit.session, held, dated)
        assert updated is not None
        assert (updated["name"], updated["birthDate"]) == (held["name"], "1971-02-03")
    with runtime.resources.unit() as unit:  # dated after the record: the EHR's name wins
        later = from_ehr(unit.session, held, {**theirs, "meta": {"lastUpdated": "2026-04-01T00:00:00Z"}})
    assert later is not None and later["name"] == [{"family": "Other", "given": ["Ada"]}]


def test_a_jobs_people_are_looked_up_in_one_search_a_resource_type(exchange_runtime: Runtime) -> None:
    """current_people asks the store once per type (store/identified.held_once), not once per person entry: here
    a Bundle with the patient and two practitioners, one of them renamed since its job was written."""
    from sqlalchemy import event

    from service.exchange.people import current_people

    other = {"system": NPI["system"], "value": "9990000025"}
    for n, performer in enumerate(({"identifier": NPI, "name": "Dr. A. Old"}, {"identifier": other, "name": "Dr. B. Old"},
                                   {"identifier": other, "name": "Dr. B. New"}), start=1):
        exchange_runtime.intake.submit("administration", administration(
            external_id=f"adm-{n}", session_number=n, performer=performer,
            started_at=f"2026-03-0{n + 1}T09:00:00-05:00", ended_at=f"2026-03-0{n + 1}T09:40:00-05:00"))
    with transaction(exchange_runtime.engine) as session:
        first, second, _ = session.scalars(select(OutboxJobRow.payload).where(OutboxJobRow.endpoint == "ehr")
                                           .order_by(OutboxJobRow.pk))
    people = [e for e in second["entry"] if e["resource"]["resourceType"] == "Practitioner"]
    payload = {**first, "entry": [*first["entry"], *people]}  # Dr. B. as its job has it: the older name
    selects: list[str] = []

    def counted(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        selects.extend([statement] if statement.lstrip().upper().startswith("SELECT") else [])

    event.listen(exchange_runtime.engine, "before_cursor_execute", counted)
    try:
        sent = current_people(exchange_runtime.engine, payload)
    finally:
        event.remove(exchange_runtime.engine, "before_cursor_execute", counted)
    assert len(selects) == 2  # Patient, Practitioner
    names = [e["resource"].get("name") for e in sent["entry"] if e["resource"]["resourceType"] == "Practitioner"]
    assert names == [[{"text": "Dr. A. Old"}], [{"text": "Dr. B. New"}]]
    assert sent["entry"][:len(first["entry"])] == first["entry"]  # the rest as written
