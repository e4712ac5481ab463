"""sandbox-check's synthetic clinic records, new for every run so they cannot meet anything already on the server.

A run id (12 hex digits of a random UUID) is in every identifier and name: the patient's MRN, the prescriber's
identifier and each record's external id (from which the mapping derives the resource ids). The prescriber's
identifier is in sandbox-check's own namespace, not the NPI's: any NPI-shaped number, even an unissued one,
may already name somebody on a shared sandbox (the demo data's 9990000017 did), so only a namespace of our
own is certain to be unused. Two runs, on one server or many, never touch each other's resources.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

#: identifier namespaces that say what the values are: synthetic, written by sandbox-check
PATIENT_SYSTEM = "https://ketamine-fhir.org/fhir/sid/sandbox-check"
PRACTITIONER_SYSTEM = "https://ketamine-fhir.org/fhir/sid/sandbox-check-practitioner"
SOURCE = "sandbox-check"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Scenario:
    """The records of one run: a plan, one IV session with readings and scores, an adverse event."""

    run_id: str

    @property
    def mrn(self) -> dict[str, str]:
        return {"system": PATIENT_SYSTEM, "value": f"SANDBOX-{self.run_id}"}

    @property
    def prescriber_identifier(self) -> dict[str, str]:
        return {"system": PRACTITIONER_SYSTEM, "value": f"SANDBOX-PRESCRIBER-{self.run_id}"}

    @staticmethod
    def token(identifier: dict[str, str]) -> str:
        """The identifier as a search token (system|value)."""
        return f"{identifier['system']}|{identifier['value']}"

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        run = self.run_id
        patient = {"identifier": self.mrn, "name": {"family": f"Testpatient-{run}", "given": ["Sandbox"]},
                   "birth_date": "1980-01-01", "sex": "female"}
        common = {"source": SOURCE, "patient": patient}
        prescriber = {"identifier": self.prescriber_identifier, "name": f"Dr. Sandbox Prescriber {run}"}
        plan = common | {
            "external_id": f"plan-{run}", "status": "active", "indication": {"code": "trd", "icd10": "F33.1"},
            "prior_antidepressant_trials": 2, "medication": "ketamine", "route": "intravenous",
            "dose": {"value": 0.5, "unit": "mg/kg"}, "infusion_minutes": 40, "phase": "induction",
            "sessions_planned": 6, "frequency": {"count": 2, "period": 1, "period_unit": "wk"},
            "period": {"start": "2026-03-02", "end": "2026-03-20"},
            "goals": [{"measure": "madrs", "target": "response", "baseline": 32}], "prescriber": prescriber}
        session = common | {
            "external_id": f"session-{run}", "plan_external_id": f"plan-{run}", "session_number": 1,
            "status": "completed", "medication": "ketamine", "route": "intravenous", "dose_mg": 35, "weight_kg": 70,
            "started_at": "2026-03-02T09:00:00-05:00", "ended_at": "2026-03-02T09:40:00-05:00",
            "performer": prescriber,
            "vitals": [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 124, "diastolic": 80,
                        "heart_rate": 72, "spo2": 98},
                       {"at": "2026-03-02T09:20:00-05:00", "phase": "intra", "systolic": 138, "diastolic": 86}],
            "scores": [{"instrument": "cadss", "value": 12, "at": "2026-03-02T09:45:00-05:00"}],
            "monitoring_ended_at": "2026-03-02T10:45:00-05:00", "discharged_with_escort": True}
        event = common | {
            "external_id": f"ae-{run}", "administration_external_id": f"session-{run}",
            "onset_at": "2026-03-02T09:20:00-05:00", "term": "nausea", "serious": False, "severity": "mild",
            "outcome": "resolved", "action_taken": "none", "causality": "probable", "recorded_by": prescriber}
        return [("treatment-plan", plan), ("administration", session), ("adverse-event", event)]
