"""A FHIR terminology server asked what offline expansion cannot answer: $validate-code, cached, with a timeout.

    server(url, timeout) -> TxServer        one per URL and timeout for the process (its cache is shared)
    TxServer.validate_code(coding)          CodeSystem/$validate-code: is the code in its system, is the display right
    TxServer.validate_in(url, value)        ValueSet/$validate-code: is the Coding or CodeableConcept in the value set
    TxServer.knows(kind, url)               does the server hold the code system or value set (a search)

An answer is a Verdict; a server that cannot be asked (refused connection, timeout, 5xx, a body that is not
FHIR JSON, a redirect to another origin) raises TxUnavailable, and is then not asked again for RETRY_AFTER
seconds: every coding of a resource would otherwise wait out the timeout in turn. Requests go only to the
server's own origin (as service/exchange/client.py pins an EHR's `next` links): the operation URLs are built
from the base, and a redirect is followed only within that origin.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from service.params import origin

FHIR_JSON = "application/fhir+json"
#: Seconds to connect and to wait for an answer; a terminology question is small, a slow server is as good as none.
DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.05
#: Answers kept per server; a terminology server's answers change with its releases, not within the hour.
CACHE_SIZE = 20_000
CACHE_SECONDS = 3600.0
#: After a failure the server is not asked again for this long; its questions get the offline answer.
RETRY_AFTER = 30.0
MAX_REDIRECTS = 3
#: Servers kept; URLs come from settings and the allowed list, so this only bounds memory.
MAX_SERVERS = 16


class TxUnavailable(Exception):
    """The server could not be asked; the message says why, as a predicate (\"did not answer within 10 s\")."""


@dataclass(frozen=True)
class TxIssue:
    """An issue the server reported about the code (R5-style `issues` output): `expression` is relative to the
    Coding or CodeableConcept sent (`Coding.display`), `kind` a tx-issue-type code when given."""

    severity: str
    kind: str
    text: str
    expression: str | None


@dataclass(frozen=True)
class Verdict:
    """`result` None: the server could not judge (it answered 4xx, e.g. an unknown value set); `message` is its own."""

    result: bool | None
    message: str | None = None
    display: str | None = None
    issues: tuple[TxIssue, ...] = ()


class TxServer:
    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self._answers: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._down: tuple[float, str] | None = None  # (until, why) after a failure

    # --- questions ---------------------------------------------------------------------------

    def validate_code(self, coding: dict[str, Any]) -> Verdict:
        """Is coding.code a code of coding.system (at coding.version), and is coding.display one of its displays?"""
        parameters = [{"name": "url", "valueUri": coding["system"]}, {"name": "coding", "valueCoding": coding}]
        return self._verdict("CodeSystem/$validate-code", parameters)

    def validate_in(self, value_set: str, value: dict[str, Any], code_type: str) -> Verdict:
        """Is the Coding (or some coding of the CodeableConcept) in the value set?"""
        name = "codeableConcept" if code_type == "CodeableConcept" else "coding"
        parameters: list[dict[str, Any]] = [{"name": "url", "valueUri": value_set},
                                            {"name": name, f"value{name[0].upper()}{name[1:]}": value}]
        return self._verdict("ValueSet/$validate-code", parameters)

    def knows(self, kind: str, url: str) -> bool:
        """Whether the server holds a CodeSystem (or ValueSet) with this url: asked when it refuses a code, to tell
        an unknown code from an unknown code system or value set, for servers that answer only with `result` and
        `message` (HAPI FHIR says `result: false` for a value set it does not hold)."""
        found = self._cached(f"knows {kind} {url}", lambda: self._send("GET", kind,
                                                                       params={"url": url, "_summary": "count"}))
        return isinstance(found, dict) and bool(found.get("total"))

    # --- plumbing ----------------------------------------------------------------------------

    def _verdict(self, operation: str, parameters: list[dict[str, Any]]) -> Verdict:
        body = {"resourceType": "Parameters", "parameter": parameters}
        key = f"{operation} {json.dumps(parameters, sort_keys=True)}"
        answer = self._cached(key, lambda: self._send("POST", operation, body=body))
        return _verdict_of(answer)

    def _cached(self, key: str, ask: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None and hit[0] > now:
                self._answers.move_to_end(key)
                return hit[1]
            down = self._down
        if down is not None and down[0] > now:
            raise TxUnavailable(down[1])
        try:
            answer = ask()
        except TxUnavailable as exc:
            with self._lock:
                self._down = (time.monotonic() + RETRY_AFTER, str(exc))
            raise
        with self._lock:
            self._down = None
            self._answers[key] = (now + CACHE_SECONDS, answer)
            while len(self._answers) > CACHE_SIZE:
                self._answers.popitem(last=False)
        return answer

    def _send(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        """The JSON the server answered: a resource for 2xx; for 4xx a Verdict-like refusal {"refused": text}."""
        url = f"{self.base_url}/{path}"
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._request(method, url, body, params)
            if answer.is_redirect:
                target = urljoin(url, answer.headers.get("Location", ""))
                if origin(target) != origin(self.base_url):
                    raise TxUnavailable(f"redirected to another origin ({_shown(target)}), which is not followed")
                url = target
                continue
            return _json_of(answer, f"{method} {path.split('?', 1)[0]}")
        raise TxUnavailable(f"redirected more than {MAX_REDIRECTS} times")

    def _request(self, method: str, url: str, body: Any, params: dict[str, str] | None) -> requests.Response:
        try:
            return self.session.request(method, url, json=body, params=params, allow_redirects=False,
                                        headers={"Accept": FHIR_JSON, **({"Content-Type": FHIR_JSON} if body else {})},
                                        timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout))
        except requests.Timeout:
            raise TxUnavailable(f"did not answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise TxUnavailable(f"could not be reached ({type(exc).__name__})") from None


def _json_of(answer: requests.Response, what: str) -> Any:
    if answer.status_code >= 500 or answer.status_code in (408, 429):
        raise TxUnavailable(f"answered {answer.status_code} to {what}")
    try:
        doc = answer.json()
    except ValueError:
        raise TxUnavailable(f"answered {answer.status_code} to {what} with a body that is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise TxUnavailable(f"answered {answer.status_code} to {what} with JSON that is not a FHIR resource")
    if answer.status_code >= 300:
        return {"refused": _outcome_text(doc) or f"it answered {answer.status_code} to {what}"}
    return doc


def _verdict_of(answer: Any) -> Verdict:
    if "refused" in answer:
        return Verdict(None, answer["refused"])
    if answer.get("resourceType") != "Parameters":
        raise TxUnavailable(f"answered $validate-code with a {answer.get('resourceType')}, not Parameters")
    values: dict[str, Any] = {}
    issues: tuple[TxIssue, ...] = ()
    for p in answer.get("parameter") or []:
        if not isinstance(p, dict):
            continue
        if p.get("name") == "issues" and isinstance(p.get("resource"), dict):
            issues = _issues(p["resource"])
        else:
            values.setdefault(str(p.get("name")), next((v for k, v in p.items() if k.startswith("value")), None))
    result = values.get("result")
    if not isinstance(result, bool):
        raise TxUnavailable("answered $validate-code without a boolean 'result'")
    message, display = values.get("message"), values.get("display")
    return Verdict(result, message if isinstance(message, str) else None,
                   display if isinstance(display, str) else None, issues)


def _issues(outcome: dict[str, Any]) -> tuple[TxIssue, ...]:
    out = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details: dict[str, Any] = issue["details"] if isinstance(issue.get("details"), dict) else {}
        kind = next((c.get("code") for c in details.get("coding") or [] if isinstance(c, dict)
                     and str(c.get("system", "")).endswith("/tx-issue-type")), None) or issue.get("code")
        where = (issue.get("expression") or issue.get("location") or [None])[0]
        out.append(TxIssue(str(issue.get("severity", "error")), str(kind or "processing"),
                           str(details.get("text") or issue.get("diagnostics") or ""),
                           where if isinstance(where, str) else None))
    return tuple(out)


def _outcome_text(doc: dict[str, Any]) -> str:
    if doc.get("resourceType") != "OperationOutcome":
        return ""
    return "; ".join(str((i.get("details") or {}).get("text") or i.get("diagnostics") or i.get("code", ""))
                     for i in doc.get("issue") or [] if isinstance(i, dict))[:500]


def _shown(url: str) -> str:
    return url.split("?", 1)[0][:200]


_SERVERS: OrderedDict[tuple[str, float], TxServer] = OrderedDict()
_SERVERS_LOCK = threading.Lock()


def server(url: str, timeout: float = DEFAULT_TIMEOUT) -> TxServer:
    """The process's client of the terminology server at `url` (its cache and failure state are shared by runs)."""
    key = (url.rstrip("/"), timeout)
    with _SERVERS_LOCK:
        found = _SERVERS.get(key)
        if found is None:
            found = _SERVERS[key] = TxServer(url, timeout)
            while len(_SERVERS) > MAX_SERVERS:
                _SERVERS.popitem(last=False)
        _SERVERS.move_to_end(key)
        return found


def forget() -> None:
    """Drop every client and its cache (tests that start a new server on a reused port)."""
    with _SERVERS_LOCK:
        _SERVERS.clear()
