"""Nothing lost on the way to the EHR and back (issue 16, done-when): generated records of every kind
(tests/mapping/strategies.py: every field, every enumeration value; test_strategies proves each is reachable)
are stored by a sending service, which maps them, validates them with our validator and pushes them through
its outbox worker to the HAPI FHIR peer; each resource is read back from HAPI and compared with what was sent;
then the patient is pulled from HAPI into a fresh database (`service.app.pull`, the FHIR facade's path: our
validator, then the reverse mapping), and the pulled record must equal the sent one field by field.

Listed normalisations, and only these:
- the canonical form (schema load and dump) on both sides, and numbers compared as numbers (84 and 84.0);
- fields the mapping declares unmapped, each with its reason in mappings/*.yaml (`ketamine-fhir mappings show`),
  are not expected back: `coverage.carried` keeps exactly what the reversible rules carry;
- people come back as now known: the patient and each practitioner as the sending service holds them
  (service/app/people.py: per field the newest record giving it). Hypothesis reuses people identifiers across
  examples with other demographics, so a person's name may come from a newer record than this one.

Size: KFHIR_FUZZ_REQUESTS / 60 examples per kind (10 in `make test`, 83 under `make fuzz`)."""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from exchange.conftest import endpoints_file
from hardening.fuzzing import FUZZ, REQUESTS
from hypothesis import given, settings
from hypothesis import strategies as st
from mapping.strategies import RECORDS
from mapping.support import canonical, numbers
from peers.hapi_server import HapiServer
from peers.test_hapi_server import golden_record
from support.databases import copy_sqlite

from service.app.people import current_person
from service.app.pull import pull
from service.app.runtime import Runtime
from service.config import Settings
from service.exchange.client import FhirClient, Written
from service.exchange.outbox import JobQuery
from service.exchange.worker import Worker
from service.mapping import default_mapper
from service.mapping.coverage import carried
from service.mapping.spec import lookup, put

pytestmark = pytest.mark.fuzz
EXAMPLES = settings(FUZZ, max_examples=max(4, REQUESTS // 60))
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT")


def on_hapi(database_url: str, folder: Path, base_url: str) -> Runtime:
    folder.mkdir(parents=True, exist_ok=True)
    path = endpoints_file(folder, {"name": "hapi", "base_url": base_url, "mode": "transaction", "timeout_s": 120})
    return Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))


@pytest.fixture(scope="module")
def sender(hapi_server: HapiServer, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Runtime]:
    """The sending service: one database for the module, so people recur across examples as in a clinic."""
    folder = tmp_path_factory.mktemp("sender")
    copy_sqlite(sqlite_template, folder / "sender.db")
    runtime = on_hapi(f"sqlite:///{folder / 'sender.db'}", folder, hapi_server.base_url)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture(scope="module")
def client(hapi_server: HapiServer) -> FhirClient:
    return FhirClient(hapi_server.base_url, timeout=120)


def shifted(record: dict[str, Any], delta: timedelta) -> dict[str, Any]:
    """The record with every instant moved by `delta` (a referent placed before the record it precedes)."""
    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and INSTANT.match(value):
            return (datetime.fromisoformat(value) + delta).isoformat()
        return value
    return move(record)  # type: ignore[no-any-return]


def referents(kind: str, record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The records a record points at, which an EHR enforcing referential integrity must hold first; a suspected
    session starts an hour before the event's onset (intake refuses an onset before the session)."""
    common = {"source": record["source"], "patient": record["patient"]}
    out: list[tuple[str, dict[str, Any]]] = []
    if record.get("plan_external_id"):
        out.append(("treatment-plan", golden_record("treatment-plan", external_id=record["plan_external_id"],
                                                    **common)))
    if record.get("administration_external_id"):
        session = golden_record("administration", external_id=record["administration_external_id"], **common)
        session.pop("plan_external_id")
        delta = datetime.fromisoformat(record["onset_at"]) - timedelta(hours=1) - datetime.fromisoformat(
            session["started_at"])
        out.append(("administration", shifted(session, delta)))
    return out


def as_now_known(sender: Runtime, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """What the pulled record must hold: what the mapping carries, its people as the sender now holds them."""
    spec = default_mapper().specs[kind]
    promised = carried(spec, record)
    for role in spec.roles:
        person = lookup(record, role.scope or "") if role.person else None
        if isinstance(person, dict):
            ident = person["identifier"]
            held = current_person(sender.engine, role.type, ident["system"], ident["value"])
            assert held is not None, (role.type, ident)
            put(promised, role.scope or "", held)
    return numbers(canonical(kind, promised))  # type: ignore[no-any-return]


def escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


@pytest.mark.parametrize("kind", list(RECORDS))
@EXAMPLES
@given(data=st.data())
def test_records_come_back_from_the_ehr_into_a_fresh_database(
        sender: Runtime, client: FhirClient, hapi_server: HapiServer, sqlite_template: Path,
        tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject) -> None:
    record = canonical(kind, {**data.draw(RECORDS[kind]()), "source": f"rt-{uuid.uuid4().hex[:12]}"})
    for other_kind, other in referents(kind, record):
        sender.intake.submit(other_kind, canonical(other_kind, other))
    stored = sender.intake.submit(kind, record).record  # mapped and validated by our validator, or refused
    tally = Worker(sender.outbox, sender.endpoints.all()).drain()
    assert (tally.retry, tally.dead) == (0, 0), [j.last_error for j in sender.outbox.list(JobQuery(limit=20))
                                                 if j.state != "done"]

    # Read back: every resource of the record is on HAPI as sent.
    (job,) = [j for j in sender.outbox.list(JobQuery(limit=500)) if j.record_id == stored.id]
    assert job.written and len(job.written) == len(job.payload["entry"])
    assert client.verify(job.payload, [Written(w["resourceType"], w["id"], w["version"], w["status"])
                                       for w in job.written]) == []

    # Pull the patient into a fresh database: the record comes back as sent.
    folder = tmp_path_factory.mktemp("fresh")
    copy_sqlite(sqlite_template, folder / "fresh.db")
    fresh = on_hapi(f"sqlite:///{folder / 'fresh.db'}", folder, hapi_server.base_url)
    try:
        ident = record["patient"]["identifier"]
        report = pull(client, fresh, f"{escaped(ident['system'])}|{escaped(ident['value'])}")
        assert report.patients == 1, report
        pulled = fresh.store.find(kind, record["source"], record["external_id"])
        assert pulled is not None, report.notes
        got = numbers(canonical(kind, pulled.content))
    finally:
        fresh.engine.dispose()
    promised = as_now_known(sender, kind, record)
    for name in sorted(set(promised) | set(got)):
        assert got.get(name) == promised.get(name), (name, got.get(name), promised.get(name))
