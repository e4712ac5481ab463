"""Terminology questions offline expansion cannot answer, put to the run's terminology server (policy.tx_server).

What is asked, as the HL7 validator asks its tx server (org.hl7.fhir.validation, InstanceValidator and the
terminology subsystem, org.hl7.fhir.r5 terminologies/validation/ValueSetValidator.java):
- every Coding whose code system we do not hold completely (LOINC, SNOMED CT, RxNorm...): CodeSystem/$validate-code,
  which says whether the code exists and whether the display is one of its displays;
- a bound Coding or CodeableConcept whose value set we do not hold, or cannot expand here (a filter, or a system we
  do not hold): ValueSet/$validate-code.
How the answer is reported, as the HL7 validator reports it:
- a wrong display: an error (ValueSetValidator.dispWarning(): ERROR unless the CLI's -display-issues-are-warnings;
  the policy's display_issues), at the coding's `.display`;
- an unknown code in a code system the server holds: an error at the coding's `.code` (UNKNOWN_CODE_IN_VERSION);
- a code system the server does not hold either: a warning (ValueSetValidator downgrades the server's `not-found`
  errors to warnings);
- a code not in the value set: the binding's severity, as offline (required error, extensible warning);
- a server that cannot be asked: the offline answer, plus a warning naming the server and why.
UCUM, BCP-47 and BCP-13 are never sent: the HL7 validator judges them locally too (units.py checks UCUM here).
"""
from __future__ import annotations

import re
from typing import Any

from service.validation.plan import ElementPlan
from service.validation.run import Run
from service.validation.terminology import Terminology
from service.validation.txserver import TxServer, TxUnavailable, Verdict, server

#: Code systems judged here, never sent to the server.
LOCAL = frozenset({"http://unitsofmeasure.org", "urn:ietf:bcp:47", "urn:ietf:bcp:13"})
#: The parts of a Coding a $validate-code question carries.
SENT = ("system", "version", "code", "display")
_SPACES = re.compile(r"\s+")
#: tx-issue-type (the server's kind of issue) → our OperationOutcome issue code
ISSUE_CODES = {"invalid-display": "invalid", "not-found": "not-found", "invalid-code": "code-invalid"}


class Remote:
    """Mixed into the Validator through Bindings: the checks that need a terminology server."""

    terminology: Terminology

    def _ask_codes(self, value: Any, code_type: str, expr: str, run: Run) -> None:
        """Each coding of `value` whose system we do not hold completely: its code and display, by the server."""
        tx = _tx(run)
        if tx is None:
            return
        for where, coding in coding_paths(value, code_type, expr):
            system = coding["system"]
            if system in LOCAL or self.terminology.complete_codes(system) is not None:
                continue
            try:
                verdict = tx.validate_code(coding)
                known = verdict.result is not False or bool(verdict.issues) or tx.knows("CodeSystem", system)
            except TxUnavailable as exc:
                _unreachable(tx, exc, f"{system}#{coding['code']}", where, run)
                continue
            _report_code(verdict, known, coding, tx, where, run)

    def _ask_value_set(self, value: Any, code_type: str, plan: ElementPlan, url: str, expr: str, run: Run) -> bool:
        """Whether the server judged `value` against the value set (its finding, if any, is added); False leaves
        the offline answer to stand (no server, the server does not know the value set, or cannot be asked)."""
        tx = _tx(run)
        codings = [c for _, c in coding_paths(value, code_type, expr)]
        if tx is None or not codings:
            return False
        sent = codings[0] if code_type != "CodeableConcept" else {"coding": codings}
        try:
            verdict = tx.validate_in(url, sent, "CodeableConcept" if code_type == "CodeableConcept" else "Coding")
            judged = verdict.result is True or (verdict.result is False and (bool(verdict.issues)
                                                                              or tx.knows("ValueSet", url)))
        except TxUnavailable as exc:
            _unreachable(tx, exc, f"membership in {url}", expr, run)
            return False
        if not judged:
            return False
        if not verdict.result:
            strength = (plan.binding or {}).get("strength")
            severity = {"required": "error", "extensible": "warning"}.get(str(strength), "information")
            shown = ", ".join(f"{c['system']}#{c['code']}" for c in codings)
            run.add(severity, "code-invalid", expr, f"{plan.path}: {shown} is not in the value set {url} ({strength} "
                                                    f"binding; terminology server {tx.base_url}"
                                                    f"{': ' + verdict.message if verdict.message else ''}).")
        return True


def _tx(run: Run) -> TxServer | None:
    url = run.policy.tx_server
    return server(url, run.policy.tx_timeout) if url else None


def _report_code(verdict: Verdict, known: bool, coding: dict[str, Any], tx: TxServer, where: str, run: Run) -> None:
    said = f"terminology server {tx.base_url}" + (f": {verdict.message}" if verdict.message else "")
    code = f"{coding['system']}#{coding['code']}"
    if verdict.issues:  # the server's own issues (R5 style, tx.fhir.org): their severities, at our paths
        for issue in verdict.issues:
            severity = issue.severity if issue.severity in ("error", "warning", "information") else "error"
            if issue.kind == "invalid-display":
                severity = run.policy.display_issues
            elif issue.kind == "not-found" and severity == "error":
                severity = "warning"
            if severity != "ignore":
                run.add(severity, ISSUE_CODES.get(issue.kind, "code-invalid"), _at(where, issue.expression),
                        f"{issue.text} ({code}; terminology server {tx.base_url}).")
        return
    if verdict.result is None:
        run.add("warning", "not-supported", where, f"{code} could not be checked ({said}).")
    elif verdict.result is False and not known:
        run.add("warning", "not-found", where, f"The code system {coding['system']} is not known to the terminology "
                                               f"server {tx.base_url}, so {code} was not checked.")
    elif verdict.result is False:
        run.add("error", "code-invalid", f"{where}.code", f"Unknown code {coding['code']!r} in the code system "
                                                          f"{coding['system']} ({said}).")
    elif _wrong_display(coding.get("display"), verdict) and run.policy.display_issues != "ignore":
        run.add(run.policy.display_issues, "invalid", f"{where}.display",
                f"Wrong display {coding['display']!r} for {code}: the terminology server {tx.base_url} gives "
                f"{verdict.display!r}" + (f" ({verdict.message})" if verdict.message else "") + ".")


def _wrong_display(given: Any, verdict: Verdict) -> bool:
    """The server returned a display other than the one given and said something about it (a server answers with
    its preferred display; without a message the given one is among the others it holds)."""
    return isinstance(given, str) and verdict.display is not None and verdict.message is not None \
        and _norm(given) != _norm(verdict.display)


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def _unreachable(tx: TxServer, exc: TxUnavailable, what: str, where: str, run: Run) -> None:
    run.add("warning", "transient", where, f"The terminology server {tx.base_url} {exc}; {what} was checked offline "
                                           f"only.")


def _at(where: str, relative: str | None) -> str:
    """The server's expression (relative to the Coding or CodeableConcept sent) at the coding's path."""
    if not relative:
        return where
    for prefix in ("Coding", "CodeableConcept.coding[0]", "CodeableConcept"):
        if relative == prefix or relative.startswith(prefix + "."):
            return where + relative[len(prefix):]
    return f"{where}.{relative}" if relative.isidentifier() else where


def coding_paths(value: Any, code_type: str, expr: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, the coding's system/version/code/display) of each coding of `value` with a system and a code."""
    if not isinstance(value, dict):
        return []
    if code_type in ("Coding", "Quantity"):
        found = [(expr, value)]
    elif code_type == "CodeableConcept" and isinstance(value.get("coding"), list):
        found = [(f"{expr}.coding[{i}]", c) for i, c in enumerate(value["coding"]) if isinstance(c, dict)]
    else:
        return []
    out = []
    for where, c in found:
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            sent = {k: c[k] for k in SENT if isinstance(c.get(k), str) and (k != "display" or code_type != "Quantity")}
            out.append((where, sent))
    return out
