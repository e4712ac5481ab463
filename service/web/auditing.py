"""What one request did, read off the request and its response, for the audit (service/security/audit.py):
the resources or records touched, the patients concerned (identifiers, hashed by the audit), the
parameter names a search used (never their values)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, g, request

from service.security.audit import MAX_ENTITIES, Access, Entity
from service.security.authn import Principal
from service.store.records import StoredRecord
from service.store.stored import StoredResource
from service.web import current

#: patients looked up by reference per event (a searchset of one patient's resources needs one)
MAX_LOOKUPS = 20


#: the attribute of a Response holding its body as its audit event reads it (shown)
ANSWER = "kfhir_answer"


def shown(response: Response, body: Any) -> Response:
    """Note on `response` what it answers, where that was made: its body as objects, or an outline with what the
    audit reads (each resource's type, id and patient references: paging.Searchset). The event then need not parse
    the answer again (about a tenth of a served search's CPU). None notes nothing: the answer is parsed."""
    if body is not None:
        setattr(response, ANSWER, body)
    return response


def access(response: Response, principal: Principal | None, interaction: str) -> Access:
    body = getattr(response, ANSWER, None)
    if body is None and response.is_json and not response.direct_passthrough:
        body = response.get_json(silent=True)
    return access_of(body, response.status_code, principal, interaction)


def written_answer(written: list[tuple[Any, bool]]) -> tuple[Any, int] | None:
    """What a write route answers, as its audit event reads it, from what the write's transaction wrote
    (store/engine.WRITTEN, in order): the record (domain API), or the first resource that is not a Provenance
    (FHIR), with the status the route gives it. None when it wrote neither: the event then waits for the answer."""
    if request.blueprint == "domain_api":
        for item, created in written:
            if isinstance(item, StoredRecord):
                return {"id": item.id, "record": item.content}, 201 if created else 200
        return None
    for item, created in written:
        if isinstance(item, StoredResource) and item.resource_type != "Provenance":
            return (None, 204) if item.deleted else (item.content, 201 if created else 200)
    return None


def access_of(body: Any, status: int, principal: Principal | None, interaction: str) -> Access:
    args = request.view_args or {}
    prefix = "/fhir" if request.path.startswith("/fhir") else "/api/v1"
    found = Access(interaction=_refined(interaction, body), status=status,
                   client_id=principal.client_id if principal else None, issuer=principal.issuer if principal else None,
                   source_address=request.remote_addr, server=current.public_root() + prefix,
                   request_id=_request_id())
    if interaction in ("search-type", "history-type", "history-system"):
        found.query = "parameters: " + (", ".join(sorted(set(request.args))) or "none")
    if request.blueprint == "domain_api":
        _domain(found, args, body)
    elif isinstance(body, dict):
        _fhir(found, args, body)
    elif args.get("resource_type"):
        found.entities.append(Entity(str(args["resource_type"]), args.get("resource_id")))
    return found


def identify_patients(found: Access, identifier_of: Callable[[str], tuple[str, str] | None],
                      prefetch: Callable[[list[str]], None] | None = None) -> None:
    """Add the identifier of each patient named only by reference (what a non-Patient read shows), so the
    console's patient filter, which matches identifier hashes, finds every access (it once found 7 of hundreds);
    at most MAX_LOOKUPS distinct patients an event, read by `prefetch` in one statement when it is given."""
    refs = list(dict.fromkeys(found.patient_refs))[:MAX_LOOKUPS]
    if prefetch is not None:
        prefetch([ref.removeprefix("Patient/") for ref in refs])
    for ref in refs:
        identifier = identifier_of(ref.removeprefix("Patient/"))
        if identifier is not None and identifier not in found.patients:
            found.patients.append(identifier)


def _request_id() -> str | None:
    from flask import g

    value = g.get("request_id")
    return str(value) if value else None


def _refined(interaction: str, body: Any) -> str:
    if interaction == "transaction" and isinstance(body, dict) and body.get("type") == "batch-response":
        return "batch"
    return interaction


# --- FHIR ----------------------------------------------------------------------------------------

def _fhir(found: Access, args: dict[str, Any], body: dict[str, Any]) -> None:
    kind = body.get("resourceType")
    if kind == "Bundle" and body.get("type") in ("transaction-response", "batch-response"):
        sent = g.get("kfhir_body")
        asked = (sent.get("entry") or []) if isinstance(sent, dict) and isinstance(sent.get("entry"), list) else []
        answers = body.get("entry") or []
        for i, entry in enumerate(answers[:MAX_ENTITIES]):
            location = ((entry or {}).get("response") or {}).get("location") or ""
            parts = location.split("/")
            request_entry = asked[i] if i < len(asked) and isinstance(asked[i], dict) else {}
            if len(parts) >= 2:
                found.entities.append(Entity(parts[0], parts[1]))
            else:  # refused or failed entries too: what was asked for, from the request
                url = str((request_entry.get("request") or {}).get("url") or "").split("?")[0].split("/")
                found.entities.append(Entity(url[0] or "Bundle entry", url[1] if len(url) > 1 else None))
            _patients(found, request_entry.get("resource"))
        return
    if kind == "Bundle":
        found.entities.append(Entity(str(args.get("resource_type") or "Bundle")))
        for entry in (body.get("entry") or [])[:MAX_ENTITIES]:
            _patients(found, (entry or {}).get("resource"))
        return
    if kind == "OperationOutcome" or not isinstance(kind, str):
        if args.get("resource_type"):
            found.entities.append(Entity(str(args["resource_type"]), args.get("resource_id")))
        return
    found.entities.append(Entity(kind, body.get("id") or args.get("resource_id")))
    _patients(found, body)


def _patients(found: Access, resource: Any) -> None:
    if not isinstance(resource, dict):
        return
    if resource.get("resourceType") == "Patient":
        if resource.get("id"):
            found.patient_refs.append(f"Patient/{resource['id']}")
        for identifier in resource.get("identifier") or []:
            if isinstance(identifier, dict) and identifier.get("value"):
                found.patients.append((str(identifier.get("system") or ""), str(identifier["value"])))
                break
        return
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            found.patient_refs.append(ref.split("/_history/")[0])


# --- domain records --------------------------------------------------------------------------------

def _domain(found: Access, args: dict[str, Any], body: Any) -> None:
    from service.domain.kinds import BY_PLURAL

    plural = args.get("plural")
    kind = BY_PLURAL[plural].name if plural in BY_PLURAL else "record"
    items = body.get("items") if isinstance(body, dict) and isinstance(body.get("items"), list) else None
    shown = items if items is not None else [body] if isinstance(body, dict) and "record" in body else []
    for item in shown[:MAX_ENTITIES]:
        found.entities.append(Entity(kind, item.get("id"), record=True))
        patient = (item.get("record") or {}).get("patient") if isinstance(item.get("record"), dict) else None
        identifier = (patient or {}).get("identifier") if isinstance(patient, dict) else None
        if isinstance(identifier, dict) and identifier.get("value"):
            found.patients.append((str(identifier.get("system") or ""), str(identifier["value"])))
    if not shown:
        found.entities.append(Entity(kind, args.get("record_id"), record=True))
