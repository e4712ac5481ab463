"""sandbox-check: a scripted exchange with a FHIR server that an integrator can hand to a hospital.

    report = run(FhirClient(base_url, auth), mode="batch", cleanup=True, progress=on_step)

The plan: read the CapabilityStatement; look the run's patient up by identifier; push a treatment plan, a
dosing session with vital signs and scores, and an adverse event (mapped and validated by us first) in the
given mode; push them again and check that nothing was duplicated; read every written resource back and
compare; search the patient's Observations following the paging; with cleanup, delete everything written,
referrers before what they refer to, also after a failure. A step the server's statement does not offer is
skipped with the reason; a step whose inputs an earlier failure withheld is skipped with that reason. The
records are new each run (service/exchange/scenario.py), so a server holding other data, or an earlier run's,
changes nothing. `progress(report, step)` is called as each step starts and ends; the report
(service/exchange/sandbox_report.py) says, per step, the requests made, their status and time, the server's
OperationOutcome and a remedy per class of failure.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from service.exchange.client import MODES, Capabilities, FhirClient, FhirError, Written, outcome_text
from service.exchange.sandbox_report import Call, Report, Step
from service.exchange.scenario import Scenario, new_run_id
from service.fhirjson import references
from service.version import version

Progress = Callable[[Report, Step], None]
MapRecord = Callable[[str, dict[str, Any]], Any]
PUSHES = ("push treatment-plan", "push administration", "push adverse-event")
STEPS = ("capabilities", "patient by identifier", *PUSHES, "push again: no duplicates", "read back and compare",
         "search by patient with paging")


class Skip(Exception):
    """A step not run, with the reason (the server does not offer what it needs, or an input is missing)."""


def run(client: FhirClient, mode: str = "transaction", cleanup: bool = False, map_record: MapRecord | None = None,
        progress: Progress | None = None, run_id: str | None = None) -> Report:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if map_record is None:
        from service.mapping import map_record as default

        map_record = default
    return _Run(client, mode, cleanup, map_record, progress, Scenario(run_id or new_run_id())).run()


class _Run:
    def __init__(self, client: FhirClient, mode: str, cleanup: bool, map_record: MapRecord,
                 progress: Progress | None, scenario: Scenario) -> None:
        self.client, self.mode, self.map_record, self.progress, self.scenario = (
            client, mode, map_record, progress, scenario)
        self.report = Report(client.base_url, mode, cleanup, datetime.now(UTC).isoformat(timespec="seconds"),
                             scenario.run_id, version(),
                             steps=[Step(n) for n in (*STEPS, *(("cleanup",) if cleanup else ()))])
        self.caps: Capabilities | None = None
        self.pushed: list[tuple[dict[str, Any], list[Written]]] = []
        self.written: dict[str, set[str]] = {}      # "Type/id" → what it refers to ("Type/id")
        self.current: Step | None = None
        self.note = ""

    # --- running -----------------------------------------------------------------------------------------

    def run(self) -> Report:
        hooks = self.client.session.hooks.setdefault("response", [])
        hooks.append(self._record)
        try:
            works: list[Callable[[], str]] = [self.capabilities, self.patient_lookup,
                                              *(self._pusher(i) for i in range(len(PUSHES))),
                                              self.push_again, self.read_back, self.search_patient]
            for step, work in zip(self.report.steps, works, strict=False):
                self._do(step, work)
            if self.report.cleanup:
                self._do(self.report.step("cleanup"), self.delete_all)
        finally:
            hooks.remove(self._record)
        return self.report

    def _do(self, step: Step, work: Callable[[], str]) -> None:
        self.current, step.status = step, "running"
        self._tell(step)
        started = time.perf_counter()
        try:
            step.message, step.status = work(), "pass"
        except Skip as exc:
            step.message, step.status = str(exc), "skip"
        except FhirError as exc:
            step.status, step.outcome, step.failure = "fail", exc.outcome, failure_class(exc, step.name)
            step.message = short_message(exc, step.calls[-1] if step.calls else None)
        except AssertionError as exc:
            step.status, step.failure, step.message = "fail", "mismatch", str(exc)
        step.seconds = time.perf_counter() - started
        self.current = None
        self._tell(step)

    def _tell(self, step: Step) -> None:
        if self.progress is not None:
            self.progress(self.report, step)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """requests' response hook: every exchange of the current step, and what any write created."""
        request = response.request
        if self.current is not None:
            self.current.calls.append(Call(str(request.method), str(response.url), response.status_code,
                                           response.elapsed.total_seconds() * 1000))
        if request.method in ("POST", "PUT") and response.status_code in (200, 201):
            for location in _locations(response, self.client.base_url):
                key = "/".join(location.split("/_history/")[0].rstrip("/").split("/")[-2:])
                self.written.setdefault(key, set())

    # --- what the server offers ----------------------------------------------------------------------------

    def _require(self, resource_type: str, *interactions: str) -> None:
        caps = self.caps
        if caps is None:
            raise Skip("skipped: the capabilities step failed")
        if not caps.types:   # a statement that lists no resources says nothing either way: try
            return
        missing = [i for i in interactions if not caps.supports(resource_type, i)]
        if missing:
            raise Skip(f"skipped: the server's CapabilityStatement does not offer {' or '.join(missing)} on "
                       f"{resource_type}")

    def _require_push(self, bundle: dict[str, Any]) -> None:
        caps = self.caps
        if caps is None:
            raise Skip("skipped: the capabilities step failed")
        if self.mode == "batch" and not caps.batch and caps.transaction:
            # HAPI FHIR 8.8.0 takes batches through its system provider's @Transaction method but its
            # statement names only `transaction`: a server that declares transactions is tried with batches
            self.note = " (the statement declares transaction, not batch: sent as batch all the same)"
        elif self.mode in ("transaction", "batch") and not getattr(caps, self.mode):
            others = ", ".join(m for m in MODES if m != self.mode)
            raise Skip(f"skipped: the server's CapabilityStatement does not offer {self.mode} "
                       f"(rest.interaction); try --mode {others}")
        for entry in bundle["entry"]:
            method = entry["request"]["method"]
            self._require(entry["resource"]["resourceType"], "create" if method == "POST" else "update")

    # --- the steps -----------------------------------------------------------------------------------------

    def capabilities(self) -> str:
        self.caps = found = self.client.capabilities()
        self.report.fhir_version = found.fhir_version
        self.report.software = found.software
        return (f"{found.software or 'software not stated'}; FHIR {found.fhir_version}; transaction "
                f"{'yes' if found.transaction else 'no'}, batch {'yes' if found.batch else 'no'}; "
                f"{len(found.types)} resource types")

    def patient_lookup(self) -> str:
        self._require("Patient", "search-type")
        matches = self._search("Patient", self.scenario.mrn)
        if matches:
            raise AssertionError(f"{len(matches)} patient(s) already hold this run's new MRN "
                                 f"{self.scenario.mrn['value']}: the server's identifier search is not exact")
        return f"no patient holds MRN {self.scenario.mrn['value']} before the push, as expected"

    def _pusher(self, index: int) -> Callable[[], str]:
        def push() -> str:
            if index and len(self.pushed) < index:
                raise Skip(f"skipped: it refers to what '{PUSHES[index - 1]}' should have written")
            kind, record = self.scenario.records()[index]
            bundle = self.map_record(kind, record).bundle
            self._require_push(bundle)
            result = self.client.push(bundle, self.mode)
            self._remember(bundle, result)
            self.pushed.append((bundle, result))
            return (f"{len(result)} resources written ({', '.join(sorted({w.resource_type for w in result}))})"
                    f"{self.note}")
        return push

    def _remember(self, bundle: dict[str, Any], result: list[Written]) -> None:
        names = {e.get("fullUrl", ""): f"{w.resource_type}/{w.id}" for e, w in zip(bundle["entry"], result,
                                                                                   strict=False)}
        for entry, stored in zip(bundle["entry"], result, strict=False):
            targets = {names.get(r, r) for _, r in references(entry["resource"])}
            self.written.setdefault(f"{stored.resource_type}/{stored.id}", set()).update(
                t for t in targets if t.count("/") == 1 and not t.startswith("urn:"))

    def push_again(self) -> str:
        if len(self.pushed) < len(PUSHES):
            raise Skip("skipped: not every record was pushed")
        moved = []
        for bundle, first in self.pushed:
            again = self.client.push(bundle, self.mode)
            moved += [f"{a.resource_type}/{a.id} (first {f.id})" for f, a in zip(first, again, strict=False)
                      if (a.resource_type, a.id) != (f.resource_type, f.id)]
        if moved:
            raise AssertionError(f"the same records pushed again were written elsewhere: {', '.join(moved[:4])}")
        counts = {t: len(self._search(t, i)) for t, i in (("Patient", self.scenario.mrn),
                                                           ("Practitioner", self.scenario.prescriber_identifier))
                  if self.caps is None or not self.caps.types or self.caps.supports(t, "search-type")}
        doubled = {t: n for t, n in counts.items() if n != 1}
        if doubled:
            raise AssertionError("after pushing twice: " + ", ".join(f"{n} {t} resources with this run's "
                                                                     f"identifier" for t, n in doubled.items()))
        return (f"{sum(len(r) for _, r in self.pushed)} resources pushed again, each to the same id; "
                f"{', '.join(f'one {t}' for t in counts) or 'no search offered to count people'}")

    def read_back(self) -> str:
        if not self.pushed:
            raise Skip("skipped: nothing was pushed")
        for _, result in self.pushed:
            for stored in result:
                self._require(stored.resource_type, "read")
        problems = [p for bundle, result in self.pushed for p in self.client.verify(bundle, result)]
        if problems:
            raise AssertionError(f"{len(problems)} difference(s): " + "; ".join(problems[:3]))
        return f"{sum(len(r) for _, r in self.pushed)} resources read back, every field as sent"

    def search_patient(self) -> str:
        if len(self.pushed) < 2:
            raise Skip("skipped: the session with its Observations was not pushed")
        self._require("Observation", "search-type")
        patient = next(w for w in self.pushed[0][1] if w.resource_type == "Patient")
        # `Patient/id`, not the bare id: both are R4 (search.html#reference), Medplum matches only the first
        found = list(self.client.search("Observation", {"patient": f"Patient/{patient.id}", "_count": "2"}))
        expected = {w.id for _, result in self.pushed for w in result if w.resource_type == "Observation"}
        missing = expected - {o.get("id") for o in found}
        if missing:
            raise AssertionError(f"{len(found)} Observations found by paging; {len(missing)} of the "
                                 f"{len(expected)} written are missing")
        pages = sum(1 for c in (self.current.calls if self.current else []) if c.method == "GET")
        return f"{len(found)} Observations over {pages} page(s) of at most 2"

    def delete_all(self) -> str:
        if not self.written:
            raise Skip("skipped: nothing was written")
        order = deletion_order(self.written)
        for key in order:
            self._require(key.split("/")[0], "delete")
        left = order
        for _ in range(3):   # one this run wrote but could not place (a failed push's) may block another: retry
            refused: dict[str, FhirError] = {}
            for key in left:
                try:
                    self.client.json("DELETE", key, ok=(200, 202, 204))
                except FhirError as exc:
                    if exc.status not in (409, 412):
                        raise
                    refused[key] = exc
            if not refused or len(refused) == len(left):
                break
            left = list(refused)
        if refused:
            raise next(iter(refused.values()))
        return f"{len(order)} resources deleted, referrers first"

    def _search(self, resource_type: str, identifier: dict[str, str]) -> list[dict[str, Any]]:
        return list(self.client.search(resource_type, {"identifier": Scenario.token(identifier)}))


# --- helpers -------------------------------------------------------------------------------------------------

def deletion_order(written: dict[str, set[str]]) -> list[str]:
    """Every written resource after all that refer to it (referrers first); unknown referrers stay first."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:   # depth first: what a resource refers to is placed before it
        if key in done or key in visiting:
            return
        visiting.add(key)
        for target in sorted(written.get(key, ())):
            if target in written:
                visit(target)
        visiting.discard(key)
        done.append(key)

    for key in written:
        visit(key)
    return done[::-1]


def failure_class(exc: FhirError, step: str) -> str:
    """Which remedy applies (service/exchange/sandbox_report.py REMEDIES)."""
    status = exc.status
    text = outcome_text(exc.outcome).lower()
    codes = {str(i.get("code")) for i in (exc.outcome or {}).get("issue") or [] if isinstance(i, dict)}
    if status is None:
        return "transport"
    if status in (401, 403) or codes & {"security", "login", "unknown"}:
        return "auth"
    if status in (404, 405, 501) or "not-supported" in codes:
        return "unsupported"
    if status == 409 and (step == "cleanup" or "reference" in text):
        return "integrity"
    if status in (409, 412):
        return "conflict"
    if status == 429 or status >= 500:
        return "server"
    if status in (400, 422) and ("specified in path" in text   # HAPI FHIR: "Resource X not found, specified in path"
                                 or "reference" in text and ("not found" in text or "resolve" in text
                                                             or "exist" in text or "not-found" in codes)):
        return "integrity"
    return "validation"


def short_message(exc: FhirError, call: Call | None) -> str:
    """One line a person can read: the request, its status and the server's first error (the whole
    OperationOutcome is in the report beside it)."""
    issues = [i for i in (exc.outcome or {}).get("issue") or [] if isinstance(i, dict)]
    errors = [i for i in issues if i.get("severity") in ("fatal", "error")] or issues
    if not errors or call is None:
        return exc.message[:500]
    more = f" (+{len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"{call.method} {call.url}: {exc.status} {outcome_text({'issue': errors[:1]})}{more}"[:500]


def _locations(response: requests.Response, base: str) -> list[str]:
    """Where a write put its resources: the Location header, or a batch's or transaction's response entries
    (HAPI FHIR answers a transaction with a Location header too, naming the response Bundle: ignored)."""
    to_base = str(response.request.url).split("?")[0].rstrip("/") == base.rstrip("/")
    if response.headers.get("Location") and not to_base:
        return [response.headers["Location"]]
    if "json" not in response.headers.get("Content-Type", ""):
        return []
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict) or body.get("type") not in ("batch-response", "transaction-response"):
        return []
    return [str((e.get("response") or {}).get("location")) for e in body.get("entry") or []
            if str((e.get("response") or {}).get("status", "")).startswith("20")
            and (e.get("response") or {}).get("location")]

