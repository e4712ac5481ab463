"""Validation issues and their OperationOutcome form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "information": 3}


@dataclass(frozen=True)
class Finding:
    """One problem: where (FHIRPath with indexes), how bad, what kind (IssueType) and why."""

    severity: str
    code: str
    expression: str
    message: str

    def as_issue(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "details": {"text": self.message},
                "expression": [self.expression]}


def operation_outcome(findings: list[Finding]) -> dict[str, Any]:
    """An OperationOutcome; with no findings it says so, as OperationOutcome needs one issue."""
    issues = [f.as_issue() for f in findings] or [
        {"severity": "information", "code": "informational", "details": {"text": "No issues found."}}]
    return {"resourceType": "OperationOutcome", "issue": issues}


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity in ("error", "fatal") for f in findings)
