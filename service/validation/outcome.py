"""Validation issues and their OperationOutcome form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ISSUE_LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
ISSUE_COL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-col"
SEVERITY_ORDER = {"fatal": 0, "error": 1, "warning": 2, "information": 3}


@dataclass(frozen=True)
class Finding:
    """One problem: where (FHIRPath with indexes), how bad, what kind (IssueType) and why."""

    severity: str
    code: str
    expression: str
    message: str
    line: int | None = None  # in the JSON text, when the input was text (positions.locate)
    column: int | None = None

    def as_issue(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code, "details": {"text": self.message},
                                 "expression": [self.expression]}
        if self.line is not None and self.column is not None:
            # as HAPI 8.8.0 does (ca.uhn.fhir.validation.ValidationResult): line/col extensions and the
            # position as a second location beside the path
            issue["extension"] = [{"url": ISSUE_LINE, "valueInteger": self.line},
                                  {"url": ISSUE_COL, "valueInteger": self.column}]
            issue["location"] = [self.expression, f"Line[{self.line}] Col[{self.column}]"]
        return issue


def operation_outcome(findings: list[Finding]) -> dict[str, Any]:
    """An OperationOutcome; with no findings it says so, as OperationOutcome needs one issue."""
    issues = [f.as_issue() for f in findings] or [
        {"severity": "information", "code": "informational", "details": {"text": "No issues found."}}]
    return {"resourceType": "OperationOutcome", "issue": issues}


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity in ("error", "fatal") for f in findings)
