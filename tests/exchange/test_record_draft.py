"""On SQLite, a new clinic record's export is drafted before its transaction (service/app/flows.RecordWritten.draft:
its people as now known, its resources as written, the outbox's text), and its transaction stores the same rows as
without a draft; a draft the transaction finds out of date (a person made or changed in between) is not used."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exchange.conftest import ENDPOINTS, endpoints_file
from factories import PATIENT, administration, assessment, bp, score, treatment_plan
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from support.databases import copy_sqlite

from service.app.runtime import Runtime
from service.config import Settings
from service.domain.intake import Intake
from service.facade import bundles
from service.mapping import map_record
from service.search.query import parse
from service.store.batch import joined, rest_of, serialise, spliced
from service.store.engine import session as transaction
from service.store.models import OutboxJobRow

RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")  # uuid4: not uuid5
TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?")
BARE = {"identifier": PATIENT["identifier"]}
SESSION = administration(vitals=[bp("2026-03-02T09:20:00-05:00", "intra", 150, 92)],
                         scores=[score("cadss", 12)])


def build(url: str, folder: Path) -> Runtime:
    path = endpoints_file(folder, *ENDPOINTS)
    return Runtime.build(Settings.load({"database_url": url, "endpoints_file": str(path)}, environ={}))


@pytest.fixture
def two(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes on two copies of one database; the second's intake drafts nothing."""
    made = []
    for name in ("drafted", "undrafted"):
        (tmp_path / name).mkdir()
        copy_sqlite(sqlite_template, tmp_path / name / "kfhir.db")
        made.append(build(f"sqlite:///{tmp_path / name / 'kfhir.db'}", tmp_path / name))
    plain = made[1].intake
    made[1].intake = Intake(plain.store, plain.map_check, plain.export)  # no draft
    yield made[0], made[1]
    for runtime in made:
        runtime.engine.dispose()


def stored(runtime: Runtime) -> list[list[str]]:
    """Every resource row, version, index row and outbox payload as text, the server's random ids and times
    masked (uuid4s: records, Provenances, people; the deterministic ids of records' resources are uuid5s)."""
    out = []
    with runtime.engine.connect() as c:
        for sql in ("SELECT resource_type, id, version, deleted, content, warnings, record_id FROM fhir_resources",
                    "SELECT resource_type, id, version, method, deleted, content FROM fhir_resource_versions",
                    "SELECT r.resource_type, r.id, i.param, i.system, i.value, i.low, i.high FROM fhir_search_index i "
                    "JOIN fhir_resources r ON r.pk = i.resource_pk",
                    "SELECT endpoint, record_kind, record_version, business_key, state, payload FROM outbox_jobs"):
            rows = [TIME.sub("T", RANDOM_ID.sub("R", "|".join(map(str, row)))) for row in c.execute(text(sql))]
            out.append(sorted(rows))
    return out


def records(runtime: Runtime) -> None:
    """A plan, its session with vitals and scores, a record that names the patient anew (newer: the people change),
    one older arriving late (its draft gives way to the rules that read other records), one sent twice, one
    replaced."""
    intake = runtime.intake
    intake.submit("treatment-plan", treatment_plan())
    intake.submit("administration", SESSION)
    intake.submit("assessment", assessment(patient=BARE))
    intake.submit("assessment", assessment(external_id="asmt-2", at="2026-03-08T10:00:00+00:00",
                                           patient={**PATIENT, "name": {"family": "Okafor", "given": ["Ada"]}}))
    intake.submit("assessment", assessment(external_id="asmt-old", at="2026-01-05T10:00:00+00:00",
                                           patient={**PATIENT, "sex": "unknown"}))
    intake.submit("administration", SESSION)  # the same again: the stored record, nothing written
    sent = intake.submit("administration", administration(external_id="adm-2", session_number=2,
                                                          started_at="2026-03-05T09:00:00-05:00",
                                                          ended_at="2026-03-05T09:40:00-05:00")).record
    intake.replace("administration", sent.id, 1, administration(external_id="adm-2", session_number=2, dose_mg=40,
                                                                started_at="2026-03-05T09:00:00-05:00",
                                                                ended_at="2026-03-05T09:40:00-05:00"))


def test_a_drafted_record_stores_the_rows_an_undrafted_one_does(two: tuple[Runtime, Runtime]) -> None:
    drafted, undrafted = two
    records(drafted)
    records(undrafted)
    mine, theirs = stored(drafted), stored(undrafted)
    assert [len(rows) for rows in mine] == [len(rows) for rows in theirs] and all(mine)
    assert mine == theirs


def test_the_draft_is_what_the_transaction_writes_when_it_holds(exchange_runtime: Runtime,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of a session's resources is written from its draft (not rewritten, indexed, serialised in the
    transaction), and the outbox's Bundle is the drafted text."""
    exchange_runtime.intake.submit("treatment-plan", treatment_plan())
    ahead: list[bool] = []
    perform = bundles._perform

    def spied(*args: Any, **kwargs: Any) -> Any:
        request = args[2]
        if request.method == "PUT" and request.criteria is None:
            ahead.append(args[-1] is not None)
        return perform(*args, **kwargs)

    monkeypatch.setattr(bundles, "_perform", spied)
    made = exchange_runtime.intake.submit("administration", SESSION).record
    assert len(ahead) >= 3 and all(ahead), ahead
    with transaction(exchange_runtime.engine) as session:
        job = session.scalars(select(OutboxJobRow).where(OutboxJobRow.record_id == made.id,
                                                         OutboxJobRow.endpoint == "ehr")).one()
        assert [e["request"]["method"] for e in job.payload["entry"]].count("PUT") >= 3


def patient(runtime: Runtime) -> dict[str, Any]:
    ident = PATIENT["identifier"]
    with runtime.resources.unit() as unit:
        found, _ = unit.search(parse("Patient", [("identifier", f"{ident['system']}|{ident['value']}")]))
    assert len(found) == 1, found  # never made twice
    return found[0].content or {}


def between(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, record: dict[str, Any], kind: str) -> None:
    """The next record's draft is followed, before its transaction, by `record` stored (as by another request)."""
    draft = runtime.intake.draft
    assert draft is not None
    done: list[bool] = []

    def then_another(mapped: Any, new: Any) -> Any:
        out = draft(mapped, new)
        if not done:
            done.append(True)
            runtime.intake.submit(kind, record)
        return out

    monkeypatch.setattr(runtime.intake, "draft", then_another)


def payload_patient(runtime: Runtime, record_id: str) -> dict[str, Any]:
    with transaction(runtime.engine) as session:
        job = session.scalars(select(OutboxJobRow).where(OutboxJobRow.record_id == record_id,
                                                         OutboxJobRow.endpoint == "ehr")).one()
        return next(e for e in job.payload["entry"] if e["resource"]["resourceType"] == "Patient")


def test_a_patient_made_after_the_draft_is_found_not_made_again(exchange_runtime: Runtime,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The draft found no Patient and named a new one; another record made it before the transaction: the
    transaction's search finds it, and the record's resources refer to it."""
    between(exchange_runtime, monkeypatch, assessment(external_id="asmt-first"), "assessment")
    made = exchange_runtime.intake.submit("assessment", assessment(external_id="asmt-second")).record
    held = patient(exchange_runtime)
    with exchange_runtime.resources.unit() as unit:
        found, _ = unit.search(parse("Observation", [("subject", f"Patient/{held['id']}")]))
    assert made.id in {o.record_id for o in found}
    assert payload_patient(exchange_runtime, made.id)["request"]["method"] == "POST"  # a conditional create: found


def test_a_patient_changed_after_the_draft_is_sent_as_changed(exchange_runtime: Runtime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The draft read the Patient at version 1; a newer record renamed it before the transaction: the Bundle
    queued for the EHR carries the new name (people as now known), not the draft's."""
    exchange_runtime.intake.submit("assessment", assessment(at="2026-03-01T10:00:00+00:00"))
    renamed = {**PATIENT, "name": {"family": "Okafor-Reyes", "given": ["Ada"]}}
    between(exchange_runtime, monkeypatch, assessment(external_id="asmt-renamed", at="2026-03-09T10:00:00+00:00",
                                                      patient=renamed), "assessment")
    made = exchange_runtime.intake.submit("assessment", assessment(external_id="asmt-bare", patient=BARE,
                                                                   at="2026-03-10T10:00:00+00:00")).record
    assert patient(exchange_runtime)["name"] == [{"family": "Okafor-Reyes", "given": ["Ada"]}]
    assert payload_patient(exchange_runtime, made.id)["resource"]["name"] == [
        {"family": "Okafor-Reyes", "given": ["Ada"]}]


@pytest.mark.both_backends
def test_records_are_drafted_where_writers_take_turns_only(exchange_runtime: Runtime) -> None:
    """SQLite's writers run one at a time, so what one does in its transaction the others wait for; PostgreSQL's
    run at once, where a draft would be work added, not moved."""
    sqlite = exchange_runtime.engine.dialect.name == "sqlite"
    assert (exchange_runtime.intake.draft is not None) is sqlite
    made = exchange_runtime.intake.submit("administration", SESSION).record  # stored either way
    assert payload_patient(exchange_runtime, made.id)["resource"]["identifier"][0]["value"] == "MRN-001"


@pytest.mark.parametrize("content", [
    {"resourceType": "Observation", "id": "x", "meta": {"versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z"},
     "status": "final", "code": {"text": "Blutdruck ä \u2028 \"q\""}, "valueQuantity": {"value": 1.5}},
    {"resourceType": "Patient", "id": "y", "meta": {}},
    {"resourceType": "Patient", "id": "y", "meta": {"profile": ["a"]}, "active": True, "note": [None, 1, []]},
])
def test_a_joined_text_is_the_content_serialised(content: dict[str, Any]) -> None:
    assert joined(content, rest_of(content)) == serialise(content) == json.dumps(content)


@pytest.mark.parametrize("odd", [{}, {"note": [{"text": ', "\\u0000": 1}'}]}, {"\x00": 1}])
def test_the_drafted_text_is_the_bundle_serialised(odd: dict[str, Any]) -> None:
    """The outbox's text spliced from its resources' texts (batch.spliced) is serialise(bundle), also when a resource
    not spliced holds a member named as its marks are (then the Bundle is serialised whole)."""
    bundle = map_record("administration", SESSION).bundle
    bundle["entry"][0]["resource"].update(odd)
    texts = {i: rest_of(e["resource"]) for i, e in enumerate(bundle["entry"]) if e["request"]["method"] == "PUT"}
    del texts[0]
    assert len(texts) >= 3 and 1 in texts
    assert spliced(bundle, texts) == serialise(bundle) == json.dumps(bundle)


def test_a_draft_that_fails_leaves_the_record_to_its_transaction(exchange_runtime: Runtime,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever stops a draft (here a lost connection while it reads) is not the record's answer: the transaction
    works the export out itself, and the record is stored and queued as without a draft."""
    assert exchange_runtime.intake.draft is not None

    def lost(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    monkeypatch.setattr("service.app.flows.draft_export", lost)
    made = exchange_runtime.intake.submit("administration", SESSION).record
    assert payload_patient(exchange_runtime, made.id)["resource"]["identifier"][0]["value"] == "MRN-001"
