"""The audit trail for the console: AuditEvents (service/security/audit.py) as table rows, and the
console's own accesses to patient data and its actions, recorded in the same trail (agent `admin:NAME`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Text, cast, or_, select

from service.admin.jobs import patient_of
from service.exchange.outbox import Failure, Job
from service.security.audit import PATIENT_HASH, Access, AuditLog, Entity
from service.store.engine import session
from service.store.models import AuditEventRow

#: AuditEvent.action (R4 audit-event-action): what the console's filter offers, in words
ACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute (search, operation)"}
#: AuditEvent.outcome (R4 audit-event-outcome)
OUTCOMES = {"0": "success", "4": "minor failure", "8": "serious failure", "12": "major failure"}
#: how console users appear as agents, beside API clients
ADMIN_PREFIX = "admin:"
#: Sign-in and sign-out are no RESTful interaction: DICOM's User Authentication event with its Login and
#: Logout subtypes, as the FHIR specification's own examples code them (AuditEvent example-login and
#: example-logout, https://build.fhir.org/audit-event-example-login.json; R4 value sets audit-event-type and
#: audit-event-sub-type include these DICOM codes). A failed sign-in and a lockout are failed Logins.
DCM = "http://dicom.nema.org/resources/ontology/DCM"
USER_AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
LOGOUT = {"system": DCM, "code": "110123", "display": "Logout"}
CONSOLE_ISSUER = "urn:ketamine-fhir:admin-console"
#: and outbox workers delivering to EHRs
WORKER_PREFIX = "worker:"


@dataclass(frozen=True)
class Row:
    id: str
    recorded: str
    action: str
    interaction: str
    outcome: str
    outcome_desc: str
    agent: str
    address: str
    what: list[str]
    patients: int


def row(event: dict[str, Any]) -> Row:
    client: dict[str, Any] = next((a for a in event.get("agent") or [] if a.get("requestor")), {})
    what: list[str] = []
    patients = 0
    for e in event.get("entity") or []:
        item = e.get("what") or {}
        if (item.get("identifier") or {}).get("system") == PATIENT_HASH or e.get("role", {}).get("code") == "1":
            patients += 1
        elif "reference" in item:
            what.append(item["reference"])
        elif e.get("description"):
            what.append(e["description"])
        elif item.get("display"):
            value = (item.get("identifier") or {}).get("value")
            what.append(f"{item['display']} {value}" if value else item["display"])
    first = (event.get("subtype") or [{}])[0]
    subtype = first.get("display") if first.get("system") == DCM else first.get("code", "")
    return Row(event.get("id", ""), event.get("recorded", ""), event.get("action", ""), subtype or "",
               OUTCOMES.get(event.get("outcome", ""), event.get("outcome", "")), event.get("outcomeDesc", ""),
               (client.get("who") or {}).get("display", ""), (client.get("network") or {}).get("address", ""),
               what, patients)


def record_admin(log: AuditLog, user: str, interaction: str, status: int, server: str, address: str | None,
                 what: list[Entity], patients: list[tuple[str, str]] | None = None,
                 query: str | None = None, description: str | None = None) -> None:
    """One console access in the audit trail: who (the admin), what they read or changed, which patient."""
    log.record(Access(interaction=interaction, status=status, client_id=ADMIN_PREFIX + user,
                      issuer=CONSOLE_ISSUER, source_address=address, server=server,
                      entities=what, patients=list(patients or []), query=query, description=description))


def record_authentication(log: AuditLog, username: str, signed_out: bool, status: int, description: str,
                          server: str, address: str | None) -> None:
    """A sign-in (successful, failed, refused while locked, the one that locked the account) or a sign-out.
    The username is recorded as typed (cut short), whether or not such an account exists: failed attempts on
    unknown names are what an attack looks like."""
    log.record(Access(interaction="login" if not signed_out else "logout", status=status,
                      client_id=ADMIN_PREFIX + (username.strip().lower()[:64] or "(no name)"), issuer=CONSOLE_ISSUER,
                      source_address=address, server=server, entities=[Entity("admin console session")],
                      description=description, event_type=USER_AUTHENTICATION, subtype=LOGOUT if signed_out else LOGIN))


def record_account_change(log: AuditLog, actor: str, username: str, change: str) -> None:
    """A change to an admin account made on the command line (unlock, a new password): an update of the account."""
    log.record(Access(interaction="update", status=200, client_id=actor, issuer="urn:ketamine-fhir:cli",
                      source_address=None, server="cli", entities=[Entity(f"admin account {username}: {change}")],
                      description=change))


def record_delivery(log: AuditLog, worker: str, job: Job, state: str, failure: Failure | None,
                    base_url: str) -> None:
    """A worker's delivery of an outbox job to an EHR: the worker as the requestor, the EHR as the destination,
    the record and the job as what was sent, the patient by the keyed hash as ever; the outcome as it was."""
    status = failure.status if failure is not None and failure.status else (200 if state == "done" else 503)
    words = {"done": "delivered", "retry": "failed, to be retried", "dead": "failed — dead letter",
             "lost": "lost (the job was reclaimed)"}.get(state, state)
    detail = f"{words}: {failure.message}" if failure is not None and failure.message else words
    if failure is not None and not failure.status:
        detail = f"no HTTP answer; {detail}"
    patient = patient_of(job.payload)
    log.record(Access(interaction="transaction", status=status, client_id=WORKER_PREFIX + worker,
                      issuer="urn:ketamine-fhir:outbox-worker", source_address=None, server=base_url,
                      entities=[Entity(job.record_kind, job.record_id, record=True),
                                Entity(f"outbox job {job.pk} to {job.endpoint}")],
                      patients=[patient] if patient else [], description=detail[:500]))


def record_pull(log: AuditLog, endpoint: str, base_url: str, identifier: tuple[str, str] | None, status: int,
                detail: str) -> None:
    """A pull of a patient's resources from an EHR (`ketamine-fhir pull`)."""
    log.record(Access(interaction="search-type", status=status, client_id=f"pull:{endpoint}",
                      issuer="urn:ketamine-fhir:pull", source_address=None, server=base_url,
                      entities=[Entity(f"pull from {endpoint}")], patients=[identifier] if identifier else [],
                      query="parameters: patient identifier", description=detail[:500]))



def mentioning(engine: Engine, needles: list[str], limit: int = 20) -> list[Row]:
    """The newest events that name any of `needles` (a record's id, its resources' `Type/id`): a record's trail.
    Ids are UUIDs, so a text match on the stored event cannot name anything else."""
    if not needles:
        return []
    text = cast(AuditEventRow.content, Text)
    stmt = (select(AuditEventRow.content).where(or_(*(text.contains(n, autoescape=True) for n in needles[:50])))
            .order_by(AuditEventRow.pk.desc()).limit(limit))
    with session(engine) as s:
        return [row(c) for c in s.scalars(stmt)]
