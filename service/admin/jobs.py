"""One outbox job for the console, as a diagnosis: the request as it is sent (method, full URL, headers with no
secret, the Bundle line by line), every attempt with its HTTP status and the server's OperationOutcome, whose
expressions link to the lines of the Bundle they name; and the job's state in words."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.admin.dashboard import STATE_NAMES, state_of
from service.admin.jsonview import View, anchor, annotate
from service.exchange.endpoints import Endpoint
from service.exchange.outbox import Job
from service.fhirjson import Finding

FHIR_JSON = "application/fhir+json"
#: How each kind of endpoint authentication shows in the headers: what is sent, never the secret itself.
AUTH_SHOWN = {"basic": "Basic … (user and password from the environment; not shown)",
              "bearer": "Bearer … (token from the environment; not shown)",
              "smart-backend": "Bearer … (access token from SMART Backend Services; not shown)"}


@dataclass(frozen=True)
class Sent:
    method: str
    url: str
    headers: list[tuple[str, str]]
    view: View          # the Bundle, line by line, each line with its FHIRPath
    note: str


@dataclass(frozen=True)
class Issue:
    severity: str
    code: str
    text: str
    expressions: list[tuple[str, str | None]]   # (as the server wrote it, the Bundle line it points at)


@dataclass(frozen=True)
class Attempt:
    number: int
    worker: str
    started_at: str | None
    finished_at: str | None
    result: str
    http_status: int | None
    error: str | None
    issues: list[Issue]


@dataclass(frozen=True)
class Diagnosis:
    job: Job
    state: str
    state_name: str
    sent: Sent
    attempts: list[Attempt]        # newest first: the current state, then history
    patient: tuple[str, str] | None  # (system, value) of the Bundle's patient


def diagnose(job: Job, endpoint: Endpoint | None, attempts: list[dict[str, Any]]) -> Diagnosis:
    outcomes = [a.get("outcome") for a in attempts] + [job.last_outcome]
    findings = [Finding(i.get("severity", "error"), i.get("code", ""), e, "") for o in outcomes
                for i in _issues(o) for e in _expressions(i)]
    view = annotate(job.payload, findings)
    paths = {line.path for line in view.lines if line.path}
    shown = [_attempt(a, paths) for a in reversed(attempts)]
    state = state_of(job)
    return Diagnosis(job, state, STATE_NAMES[state], sent(job, endpoint, view), shown, patient_of(job.payload))


def patient_of(bundle: dict[str, Any]) -> tuple[str, str] | None:
    """The first identifier of the Bundle's Patient: the way to the patient's course."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            for found in resource.get("identifier") or []:
                if isinstance(found, dict) and found.get("system") and found.get("value"):
                    return str(found["system"]), str(found["value"])
    return None


def sent(job: Job, endpoint: Endpoint | None, view: View) -> Sent:
    mode = endpoint.mode if endpoint else "transaction"
    base = endpoint.base_url.rstrip("/") if endpoint else "(endpoint no longer configured)"
    headers = [("Accept", FHIR_JSON), ("Content-Type", FHIR_JSON)]
    auth = (endpoint.auth.get("type") if endpoint else None) or "none"
    if auth in AUTH_SHOWN:
        headers.append(("Authorization", AUTH_SHOWN[auth]))
    if mode == "conditional":
        note = ("One request per entry, people first (the server takes no transactions): "
                + "; ".join(f"{e['request']['method']} {base}/{e['request']['url']}" for e in _entries(job)))
        return Sent("(per entry)", base, headers, view, note)
    note = (f"The Bundle below, sent as type `{mode}`." if mode == "transaction" else
            "A batch: people first (conditional creates), then the rest with references rewritten.")
    return Sent("POST", base, headers, view, note)


def _attempt(a: dict[str, Any], paths: set[str]) -> Attempt:
    issues = [Issue(i.get("severity", ""), i.get("code", ""),
                    ((i.get("details") or {}).get("text") or i.get("diagnostics") or ""),
                    [(e, anchor(e, paths)) for e in _expressions(i)]) for i in _issues(a.get("outcome"))]
    return Attempt(a["number"], a["worker"], a.get("started_at"), a.get("finished_at"), a.get("result") or "running",
                   a.get("http_status"), a.get("error"), issues)


def _issues(outcome: Any) -> list[dict[str, Any]]:
    if not isinstance(outcome, dict):
        return []
    return [i for i in outcome.get("issue") or [] if isinstance(i, dict)]


def _expressions(issue: dict[str, Any]) -> list[str]:
    found = issue.get("expression") or issue.get("location") or []
    # Servers write `Bundle.entry[3].resource.status` for a Bundle: the names our lines carry.
    return [e.strip() for e in found if isinstance(e, str)]


def _entries(job: Job) -> list[dict[str, Any]]:
    return [e for e in job.payload.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("request"), dict)]
