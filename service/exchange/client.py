"""A FHIR R4 client for EHR servers: capabilities, pushing a record's Bundle, reading back, pulling.

One requests.Session per endpoint (connection pooling). Every failure becomes a FhirError whose
message a person can act on — the server's OperationOutcome text when it sent one — and says
whether trying again later can help (network errors, 429, 5xx: `retryable`, with Retry-After).
"""
from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from service.exchange.auth import Auth, AuthError
from service.fhirjson import etag, etag_tag, references, rewrite_references
from service.params import origin as _origin

FHIR_JSON = "application/fhir+json"
MODES = ("transaction", "batch", "conditional")


class FhirError(Exception):
    def __init__(self, message: str, status: int | None = None, outcome: dict[str, Any] | None = None,
                 retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.outcome = outcome
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def conflict(self) -> bool:
        """412 and 409 both mean: someone changed it since; re-read and reconcile."""
        return self.status in (409, 412)


@dataclass
class Written:
    resource_type: str
    id: str
    version: str | None
    status: str
    location: str | None = None


@dataclass
class Capabilities:
    fhir_version: str
    transaction: bool
    batch: bool
    types: dict[str, set[str]] = field(default_factory=dict)   # resource type → interactions
    software: str = ""                                          # software.name and .version, as stated

    def supports(self, resource_type: str, interaction: str) -> bool:
        return interaction in self.types.get(resource_type, set())


class FhirClient:
    def __init__(self, base_url: str, auth: Auth | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth or Auth()
        self.timeout = timeout
        self.session = session or requests.Session()
        #: the HTTP status of the last answer (the outbox keeps it with a successful attempt)
        self.last_status: int | None = None

    # --- requests --------------------------------------------------------------------------

    def request(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                params: Any = None) -> requests.Response:
        if url.startswith(("http://", "https://")):
            full = url
            if _origin(url) != _origin(self.base_url):  # a `next` link elsewhere would receive our credentials
                raise FhirError(f"{method} {url.split('?', 1)[0]}: the server linked to another server (origin "
                                f"{_origin(url)}); only {_origin(self.base_url)} is sent our credentials",
                                retryable=False)
        else:  # the base itself for Bundles: `[base]`, not `[base]/`, as the spec writes it
            full = f"{self.base_url}/{url.lstrip('/')}" if url.strip("/") else self.base_url
        for attempt in range(2):
            try:
                sent = {"Accept": FHIR_JSON, **self.auth.headers(self.session), **(headers or {})}
            except AuthError as exc:
                raise FhirError(f"authentication failed: {exc}", retryable=False) from None
            if body is not None:
                sent["Content-Type"] = FHIR_JSON
            try:
                answer = self.session.request(method, full, json=body, headers=sent, params=params,
                                              timeout=self.timeout)
            except requests.Timeout:
                raise FhirError(f"{method} {full}: no answer within {self.timeout} s", retryable=True) from None
            except requests.ConnectionError as exc:
                raise FhirError(f"{method} {full}: connection failed ({type(exc).__name__})", retryable=True) \
                    from None
            if answer.status_code == 401 and attempt == 0 and self.auth.refresh():
                continue  # an expired token: ask for a new one, once
            self.last_status = answer.status_code
            return answer
        return answer

    def json(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
             params: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        answer = self.request(method, url, body, headers, params)
        if answer.status_code not in ok:
            raise error_of(method, url, answer)
        if answer.status_code == 204 or not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise FhirError(f"{method} {url}: the server answered {answer.status_code} with a body that is not "
                            f"JSON ({_kind_of_body(answer)})", answer.status_code, retryable=False) from None

    # --- capabilities ----------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        statement = self.json("GET", "metadata")
        if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
            raise FhirError("GET metadata did not return a CapabilityStatement")
        version = str(statement.get("fhirVersion", ""))
        if not version.startswith("4.0"):
            raise FhirError(f"the server speaks FHIR {version or '(unknown)'}, not R4 (4.0.x)")
        rest: dict[str, Any] = next((r for r in statement.get("rest") or [] if r.get("mode") == "server"), {})
        system = {i.get("code") for i in rest.get("interaction") or []}
        types = {r.get("type"): {i.get("code") for i in r.get("interaction") or []} for r in rest.get("resource") or []}
        software = statement.get("software")
        named = " ".join(str(software[k]) for k in ("name", "version") if software.get(k)) \
            if isinstance(software, dict) else ""
        return Capabilities(version, "transaction" in system, "batch" in system, types, named)

    # --- writing ---------------------------------------------------------------------------

    def push(self, bundle: dict[str, Any], mode: str = "transaction") -> list[Written]:
        """Send a record's transaction Bundle in the endpoint's mode; what the server stored, per entry."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode == "conditional":
            return self._push_each(bundle)
        if mode == "batch":
            return self._push_batch(bundle)
        sent = dict(bundle, type=mode)
        answer = self.json("POST", "", sent)
        if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
            raise FhirError("the server did not answer the Bundle with a Bundle")
        return [_written(entry, response.get("response") or {})
                for entry, response in zip(bundle["entry"], answer.get("entry") or [], strict=False)]

    def _push_batch(self, bundle: dict[str, Any]) -> list[Written]:
        """Batches in waves: the people first (one conditional create each), then each wave holds only entries
        whose references are already stored, rewritten to the ids the server holds. R4 http.html §3.1.0.11.1
        (batch processing rules): "References within a Bundle.entry.resource to another Bundle.entry.resource
        that is being created within the batch are considered to be non-conformant"; HAPI FHIR's request
        validator resolves such references inside the batch and checks them against their target profiles
        there, refusing the batch with 422."""
        people = [e for e in bundle["entry"] if is_person(e)]
        names: dict[str, str] = {}
        written: dict[int, Written] = {}
        for entry in people:
            done = self._push_each({"entry": [entry]})[0]
            names[entry.get("fullUrl", "")] = f"{done.resource_type}/{done.id}"
            written[id(entry)] = done
        for entry in bundle["entry"]:
            if entry["request"]["method"] == "PUT" and entry.get("fullUrl") and not is_person(entry):
                names[entry["fullUrl"]] = entry["request"]["url"]
        for wave in batch_waves([e for e in bundle["entry"] if id(e) not in written]):
            batch = {"resourceType": "Bundle", "type": "batch",
                     "entry": [{"fullUrl": e.get("fullUrl"), "request": e["request"],
                                "resource": rewrite_references(e["resource"], names)} for e in wave]}
            answer = self.json("POST", "", batch)
            for entry, response in zip(wave, (answer or {}).get("entry") or [], strict=False):
                result = response.get("response") or {}
                status = str(result.get("status", ""))
                if not status.startswith("2"):
                    outcome = result.get("outcome")
                    raise FhirError(f"{entry['request']['method']} {entry['request']['url']}: {status} "
                                    f"{outcome_text(outcome)}", int(status[:3]) if status[:3].isdigit() else None,
                                    outcome)
                written[id(entry)] = done = _written(entry, result)
                if done.id:
                    names[entry.get("fullUrl", "")] = f"{done.resource_type}/{done.id}"
        return [written[id(e)] for e in bundle["entry"]]

    def _push_each(self, bundle: dict[str, Any]) -> list[Written]:
        """One request per entry, for servers without transactions: people first, references rewritten."""
        names: dict[str, str] = {}
        written = []
        for entry in dependency_order(bundle["entry"]):
            request = entry["request"]
            resource = rewrite_references(entry["resource"], names)
            headers = {"If-None-Exist": request["ifNoneExist"]} if request.get("ifNoneExist") else {}
            if request.get("ifMatch"):
                headers["If-Match"] = request["ifMatch"]
            answer = self.request(request["method"], request["url"], resource, headers)
            if answer.status_code not in (200, 201):
                raise error_of(request["method"], request["url"], answer)
            stored = answer.json() if answer.content else {}
            location = answer.headers.get("Location") or answer.headers.get("Content-Location")
            rid = str(stored.get("id") or _id_of(location) or "")
            names[entry.get("fullUrl", "")] = f"{resource['resourceType']}/{rid}"
            written.append(Written(resource["resourceType"], rid, (stored.get("meta") or {}).get("versionId"),
                                   str(answer.status_code), location))
        order = {e.get("fullUrl"): i for i, e in enumerate(bundle["entry"])}
        return sorted(written, key=lambda w: order.get(next((k for k, v in names.items()
                                                             if v == f"{w.resource_type}/{w.id}"), ""), 0))

    def update(self, resource: dict[str, Any], version: str | None) -> dict[str, Any]:
        """A version-aware update: If-Match on the version read; 409/412 raise FhirError(conflict)."""
        headers = {"If-Match": etag(version)} if version else {}
        result: dict[str, Any] = self.json("PUT", f"{resource['resourceType']}/{resource['id']}", resource, headers)
        return result

    # --- reading ---------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("GET", f"{resource_type}/{resource_id}", ok=(200,))
        return result

    def search(self, resource_type: str, params: dict[str, str] | list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        """Every matching resource, following `next` links to the end. A page with no `next` link whose `total`
        says more match is followed by `_offset` (Medplum's in-memory repository pages so, without links)."""
        page = self.json("GET", resource_type, params=params, ok=(200,))
        seen_pages, seen, first_ids = 0, 0, None
        while isinstance(page, dict):
            matches = [e["resource"] for e in page.get("entry") or []
                       if (e.get("search") or {}).get("mode", "match") == "match" and "resource" in e]
            ids = [m.get("id") for m in matches]
            if seen_pages and ids[:1] == first_ids:
                return   # the server ignored _offset: the same page again
            first_ids, seen = ids[:1], seen + len(matches)
            yield from matches
            following = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), None)
            seen_pages += 1
            if seen_pages > 10_000:
                return
            if following:
                page = self.json("GET", following, ok=(200,))
            elif matches and isinstance(page.get("total"), int) and page["total"] > seen:
                rest = [(k, v) for k, v in (params.items() if isinstance(params, dict) else params) if k != "_offset"]
                page = self.json("GET", resource_type, params=[*rest, ("_offset", str(seen))], ok=(200,))
            else:
                return

    def verify(self, bundle: dict[str, Any], written: list[Written]) -> list[str]:
        """Read back what was written; the differences from what was sent, as sentences."""
        problems = []
        for entry, stored in zip(bundle["entry"], written, strict=False):
            sent = entry["resource"]
            try:
                found = self.read(stored.resource_type, stored.id)
            except FhirError as exc:
                problems.append(f"{stored.resource_type}/{stored.id}: cannot read it back ({exc.message})")
                continue
            for key, value in sent.items():
                if key in ("id", "meta", "text") or any(references(value)):
                    continue
                if found.get(key) != value:
                    problems.append(f"{stored.resource_type}/{stored.id}.{key}: sent {value!r}, "
                                    f"the server holds {found.get(key)!r}")
        return problems


# --- helpers -----------------------------------------------------------------------------------

def error_of(method: str, url: str, answer: requests.Response) -> FhirError:
    outcome = None
    if "json" in answer.headers.get("Content-Type", ""):
        try:
            body = answer.json()
            outcome = body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None
        except ValueError:
            outcome = None
    status = answer.status_code
    # temporary: 408 Request Timeout, 429, and 5xx but 501 Not Implemented and 505, which no retry mends
    retryable = status in (408, 429) or (status >= 500 and status not in (501, 505))
    # The full URL as sent (a transaction goes to `[base]`, given here as ""), without its query: search
    # parameters may name a patient, and this message is kept with the job and shown in the console.
    url = str(getattr(answer, "url", "") or "").split("?", 1)[0] or url
    text = outcome_text(outcome) or _kind_of_body(answer)
    return FhirError(f"{method} {url}: {status} {answer.reason or ''}: {text}".strip(), status, outcome,
                     retryable, retry_after(answer.headers.get("Retry-After")))


def outcome_text(outcome: Any) -> str:
    """The OperationOutcome's issues as one line: `error: Observation.status: … (expression)`."""
    if not isinstance(outcome, dict):
        return ""
    parts = []
    for issue in outcome.get("issue") or []:
        text = (issue.get("details") or {}).get("text") or issue.get("diagnostics") or issue.get("code", "")
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        parts.append(f"{issue.get('severity', 'error')}: {text}" + (f" ({where})" if where else ""))
    return "; ".join(parts)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _kind_of_body(answer: requests.Response) -> str:
    kind = answer.headers.get("Content-Type", "no content type").split(";")[0]
    return f"a {kind} body of {len(answer.content)} bytes"


def _written(entry: dict[str, Any], result: dict[str, Any]) -> Written:
    location = result.get("location")
    resource_type = entry["resource"]["resourceType"] if "resource" in entry else entry["request"]["url"].split("/")[0]
    version = None
    if location and "/_history/" in location:
        version = location.split("/_history/")[1].split("/")[0]
    elif result.get("etag"):
        version = etag_tag(str(result["etag"]))
    return Written(resource_type, _id_of(location) or "", version, str(result.get("status", "")), location)


def _id_of(location: str | None) -> str | None:
    if not location:
        return None
    parts = location.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if parts else None


def is_person(entry: dict[str, Any]) -> bool:
    """A person entry: a conditional create, the conditional update of a person a record changed, or the
    version-aware update of the EHR's own person (service/exchange/people.py); only people carry `ifMatch`."""
    request = entry["request"]
    return bool(request.get("ifNoneExist")) or (request["method"] == "PUT" and (
        "?" in request["url"] or bool(request.get("ifMatch"))))


def dependency_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries so that what an entry refers to comes before it (servers that check references on
    write refuse the other order when entries are sent one by one or in a batch)."""
    names = {}
    for i, entry in enumerate(entries):
        if entry.get("fullUrl"):
            names[entry["fullUrl"]] = i
        if entry["request"]["method"] == "PUT" and not is_person(entry):
            names[entry["request"]["url"]] = i
    needs = {i: {names[r] for _, r in references(e.get("resource")) if r in names and names[r] != i}
             for i, e in enumerate(entries)}
    ordered: list[int] = []
    visiting: set[int] = set()

    def visit(i: int) -> None:
        if i in ordered or i in visiting:
            return  # placed already, or a cycle: keep the given order within it
        visiting.add(i)
        for j in sorted(needs[i]):
            visit(j)
        visiting.discard(i)
        ordered.append(i)

    for i in range(len(entries)):
        visit(i)
    return [entries[i] for i in ordered]


def batch_waves(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The entries in waves: none refers to an entry of its own wave or a later one (a cycle ends up in one wave)."""
    names = {e["fullUrl"]: i for i, e in enumerate(entries) if e.get("fullUrl")}
    needs = {i: {names[r] for _, r in references(e.get("resource")) if r in names and names[r] != i}
             for i, e in enumerate(entries)}
    waves: list[list[dict[str, Any]]] = []
    placed: set[int] = set()
    while len(placed) < len(entries):
        ready = [i for i in range(len(entries)) if i not in placed and needs[i] <= placed]
        ready = ready or [i for i in range(len(entries)) if i not in placed]
        waves.append([entries[i] for i in ready])
        placed.update(ready)
    return waves
