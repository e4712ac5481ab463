"""Provenance for every resource version this server writes on someone's behalf: received from a client
(an EHR) through the facade, or mapped from a clinic record. Written by the FHIR core in the same
transaction as the version it describes.

Who: the API client the write is made for (None from the command line), and this server as custodian
(received) or assembler (mapped from a record, which is then the `source` entity). Both are given by
the caller: the store's unit of work carries them (service/store/resources.py Unit).
"""
from __future__ import annotations

from typing import Any

from service.security.audit import RECORD_ID, SERVER_NAME

#: R4 ProvenanceActivityType draws on v3 DataOperation (http://terminology.hl7.org/CodeSystem/v3-DataOperation):
#: CREATE, UPDATE
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
#: R4 ProvenanceParticipantType (http://terminology.hl7.org/CodeSystem/provenance-participant-type):
#: author, custodian, assembler
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def _agent(role: str, who: dict[str, Any]) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PARTICIPANT, "code": role}]}, "who": who}


def provenance(targets: list[str], created: bool, recorded: str, client: tuple[str, str] | None = None,
               record: str | None = None) -> dict[str, Any]:
    """The Provenance of the versions `Type/id/_history/n` one write created (or updated), written for the API
    client `client` (issuer, client id), from the clinic record `record` when they are its FHIR form."""
    agents = []
    if client is not None:
        agents.append(_agent("author", {"identifier": {"system": client[0], "value": client[1]},
                                        "display": client[1]}))
    agents.append(_agent("assembler" if record else "custodian", {"display": SERVER_NAME}))
    content: dict[str, Any] = {
        "resourceType": "Provenance", "target": [{"reference": target} for target in targets], "recorded": recorded,
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "CREATE" if created else "UPDATE"}]},
        "agent": agents,
    }
    if record:
        content["entity"] = [{"role": "source", "what": {"identifier": {"system": RECORD_ID, "value": record},
                                                         "display": "clinic record"}}]
    return content
