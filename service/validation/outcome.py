"""Validation findings and their OperationOutcome form now live in service/fhirjson.py.

Kept only while service/facade and service/web/fhir_api.py (being split in issue 14) still import from here;
deleted once they import service.fhirjson.
"""
from service.fhirjson import ISSUE_COL, ISSUE_LINE, SEVERITY_ORDER, Finding, has_errors, operation_outcome

__all__ = ["ISSUE_COL", "ISSUE_LINE", "SEVERITY_ORDER", "Finding", "has_errors", "operation_outcome"]
