"""sandbox-check: a scripted exchange with a FHIR server, reported step by step (as Inferno does).

The steps: capabilities; the patient by identifier; push a treatment plan, a dosing session with
vital signs and scores, and an adverse event (each record mapped and validated by us first); read
every written resource back and compare it field by field; search the patient's Observations
following every next link; optionally delete what was written. A failed step stops the steps that
need it (they are skipped, not failed again). Exit status 0 only when every step passed.
"""
from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from service.exchange.client import FhirClient, FhirError, Written

#: Synthetic, obviously fake data: the patient's MRN says what it is.
SANDBOX_MRN = {"system": "https://ketamine-fhir.org/fhir/sid/sandbox-check", "value": "SANDBOX-0001"}
NPI = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"}


@dataclass
class Step:
    name: str
    status: str = "skip"       # pass | fail | skip
    seconds: float = 0.0
    message: str = ""


@dataclass
class Report:
    base_url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(s.status == "pass" for s in self.steps)

    def table(self) -> str:
        width = max(len(s.name) for s in self.steps)
        lines = [f"sandbox-check {self.base_url}", "", f"{'step':<{width}}  result  seconds  message"]
        for s in self.steps:
            lines.append(f"{s.name:<{width}}  {s.status.upper():<6}  {s.seconds:>7.2f}  {s.message}")
        failed = sum(s.status == "fail" for s in self.steps)
        skipped = sum(s.status == "skip" for s in self.steps)
        verdict = "all steps passed" if self.passed else f"{failed} failed, {skipped} skipped"
        return "\n".join(lines + ["", verdict])

    def as_json(self) -> str:
        return json.dumps({"base_url": self.base_url, "passed": self.passed,
                           "steps": [asdict(s) for s in self.steps]}, indent=2)

    def as_html(self) -> str:
        colours = {"pass": "#1b7f3b", "fail": "#b3261e", "skip": "#6b6b6b"}
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td style=\"color:{colours[s.status]};font-weight:bold\">"
            f"{s.status.upper()}</td><td>{s.seconds:.2f}</td><td>{html.escape(s.message)}</td></tr>"
            for s in self.steps)
        verdict = "All steps passed" if self.passed else "Some steps did not pass"
        return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sandbox-check</title>"
                "<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}"
                "td,th{border:1px solid #ccc;padding:.4rem .6rem;text-align:left;vertical-align:top}</style></head>"
                f"<body><h1>sandbox-check</h1><p>Server: <code>{html.escape(self.base_url)}</code></p>"
                f"<p><strong>{verdict}</strong></p><table><thead><tr><th>Step</th><th>Result</th>"
                f"<th>Seconds</th><th>Message</th></tr></thead><tbody>{rows}</tbody></table></body></html>")


def records() -> list[tuple[str, dict[str, Any]]]:
    """The scenario's clinic records (synthetic): a plan, one IV session with readings, an adverse event."""
    patient = {"identifier": SANDBOX_MRN, "name": {"family": "Testpatient", "given": ["Sandbox"]},
               "birth_date": "1980-01-01", "sex": "female"}
    common = {"source": "sandbox-check", "patient": patient}
    prescriber = {"identifier": NPI, "name": "Dr. Sandbox Prescriber"}
    plan = common | {
        "external_id": "plan-1", "status": "active", "indication": {"code": "trd", "icd10": "F33.1"},
        "prior_antidepressant_trials": 2, "medication": "ketamine", "route": "intravenous",
        "dose": {"value": 0.5, "unit": "mg/kg"}, "infusion_minutes": 40, "phase": "induction",
        "sessions_planned": 6, "frequency": {"count": 2, "period": 1, "period_unit": "wk"},
        "period": {"start": "2026-03-02", "end": "2026-03-20"},
        "goals": [{"measure": "madrs", "target": "response", "baseline": 32}], "prescriber": prescriber}
    session = common | {
        "external_id": "session-1", "plan_external_id": "plan-1", "session_number": 1, "status": "completed",
        "medication": "ketamine", "route": "intravenous", "dose_mg": 35, "weight_kg": 70,
        "started_at": "2026-03-02T09:00:00-05:00", "ended_at": "2026-03-02T09:40:00-05:00",
        "performer": prescriber,
        "vitals": [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 124, "diastolic": 80,
                    "heart_rate": 72, "spo2": 98},
                   {"at": "2026-03-02T09:20:00-05:00", "phase": "intra", "systolic": 138, "diastolic": 86}],
        "scores": [{"instrument": "cadss", "value": 12, "at": "2026-03-02T09:45:00-05:00"}],
        "monitoring_ended_at": "2026-03-02T10:45:00-05:00", "discharged_with_escort": True}
    event = common | {
        "external_id": "ae-1", "administration_external_id": "session-1", "onset_at": "2026-03-02T09:20:00-05:00",
        "term": "nausea", "serious": False, "severity": "mild", "outcome": "resolved", "action_taken": "none",
        "causality": "probable", "recorded_by": prescriber}
    return [("treatment-plan", plan), ("administration", session), ("adverse-event", event)]


def run(client: FhirClient, mode: str = "transaction", cleanup: bool = False,
        map_record: Callable[[str, dict[str, Any]], Any] | None = None) -> Report:
    if map_record is None:
        from service.mapping import map_record as default

        map_record = default
    report = Report(client.base_url)
    written: list[tuple[dict[str, Any], list[Written]]] = []

    def step(name: str, work: Callable[[], str], needs: bool = True) -> bool:
        entry = Step(name)
        report.steps.append(entry)
        if not needs:
            entry.message = "skipped: an earlier step failed"
            return False
        started = time.perf_counter()
        try:
            entry.message = work()
            entry.status = "pass"
        except (FhirError, AssertionError, ValueError, KeyError) as exc:
            entry.status = "fail"
            entry.message = str(getattr(exc, "message", exc)) or type(exc).__name__
        entry.seconds = time.perf_counter() - started
        return entry.status == "pass"

    def capabilities() -> str:
        found = client.capabilities()
        if mode == "transaction" and not found.transaction:
            raise AssertionError("the server does not declare transaction support; use --mode conditional")
        return f"FHIR {found.fhir_version}, transaction {'yes' if found.transaction else 'no'}"

    def patient_lookup() -> str:
        matches = list(client.search("Patient", {"identifier": f"{SANDBOX_MRN['system']}|{SANDBOX_MRN['value']}"}))
        return f"{len(matches)} patient(s) with the sandbox MRN before the push"

    ok = step("capabilities", capabilities)
    step("patient by identifier", patient_lookup, ok)
    pushed = ok
    for kind, record in records():
        def push(kind: str = kind, record: dict[str, Any] = record) -> str:
            bundle = map_record(kind, record).bundle
            result = client.push(bundle, mode)
            written.append((bundle, result))
            return f"{len(result)} resources written ({', '.join(sorted({w.resource_type for w in result}))})"
        pushed = step(f"push {kind}", push, pushed) and pushed

    def read_back() -> str:
        problems = [p for bundle, result in written for p in client.verify(bundle, result)]
        if problems:
            raise AssertionError(f"{len(problems)} difference(s): " + "; ".join(problems[:3]))
        return f"{sum(len(r) for _, r in written)} resources read back, every field as sent"

    def search_patient() -> str:
        (patient,) = client.search("Patient", {"identifier": f"{SANDBOX_MRN['system']}|{SANDBOX_MRN['value']}"})
        found = list(client.search("Observation", {"patient": patient["id"], "_count": "2"}))
        expected = sum(1 for _, result in written for w in result if w.resource_type == "Observation")
        if len({o["id"] for o in found}) < expected:
            raise AssertionError(f"{len(found)} Observations found by paging, {expected} were written")
        return f"{len(found)} Observations over pages of 2"

    step("read back and compare", read_back, pushed)
    step("search by patient with paging", search_patient, pushed)
    if cleanup:
        def delete_all() -> str:
            count = 0
            for _, result in reversed(written):
                for w in reversed(result):
                    if w.resource_type not in ("Patient", "Practitioner"):
                        client.json("DELETE", f"{w.resource_type}/{w.id}", ok=(200, 202, 204))
                        count += 1
            return f"{count} resources deleted"
        step("cleanup", delete_all, pushed)
    return report
