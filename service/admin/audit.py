"""The audit trail for the console: AuditEvents (service/security/audit.py) as table rows, and the
console's own accesses to patient data and its actions, recorded in the same trail (agent `admin:NAME`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.security.audit import PATIENT_HASH, Access, AuditLog, Entity

#: AuditEvent.action (R4 audit-event-action): what the console's filter offers, in words
ACTIONS = {"C": "create", "R": "read", "U": "update", "D": "delete", "E": "execute (search, operation)"}
#: AuditEvent.outcome (R4 audit-event-outcome)
OUTCOMES = {"0": "success", "4": "minor failure", "8": "serious failure", "12": "major failure"}
#: how console users appear as agents, beside API clients
ADMIN_PREFIX = "admin:"


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
    subtype = (event.get("subtype") or [{}])[0].get("code", "")
    return Row(event.get("id", ""), event.get("recorded", ""), event.get("action", ""), subtype,
               OUTCOMES.get(event.get("outcome", ""), event.get("outcome", "")), event.get("outcomeDesc", ""),
               (client.get("who") or {}).get("display", ""), (client.get("network") or {}).get("address", ""),
               what, patients)


def record_admin(log: AuditLog, user: str, interaction: str, status: int, server: str, address: str | None,
                 what: list[Entity], patients: list[tuple[str, str]] | None = None,
                 query: str | None = None) -> None:
    """One console access in the audit trail: who (the admin), what they read or changed, which patient."""
    log.record(Access(interaction=interaction, status=status, client_id=ADMIN_PREFIX + user,
                      issuer="urn:ketamine-fhir:admin-console", source_address=address, server=server,
                      entities=what, patients=list(patients or []), query=query))

