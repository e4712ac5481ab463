"""Terminology checks of the validator: bindings to value sets and codes of code systems held completely; what
they cannot answer goes to the run's terminology server, if it has one (remote.py)."""
from __future__ import annotations

from typing import Any

from service.conformance.definitions import CORE_SD
from service.validation.plan import ElementPlan
from service.validation.remote import Remote
from service.validation.run import Run
from service.validation.terminology import Terminology

BINDING_SEVERITY = {"required": "error", "extensible": "warning", "preferred": "information"}
#: R4's vitalsigns profiles bind Observation.component.value[x], whatever its type, to this value set (required).
#: The HL7 validator backs that off to extensible for R4's own profiles ("the R4 profile wrongly applies this value
#: set to all types": org.hl7.fhir.r5 utils/PackageHackerR5.java); profiles derived elsewhere keep what they say.
VITALS_UNITS = "http://hl7.org/fhir/ValueSet/ucum-vitals-common|4.0.1"
ANSWERS_KEPT = 10_000  # per kind of answer remembered
Coded = tuple[str | None, Any, str | None]  # a coding's system, code and display (codings_of)


class Bindings(Remote):
    """Mixed into the Validator: the checks that need its terminology."""

    terminology: Terminology
    #: (value set, each coding's system, code and display) found in the value set with no display to question
    _in_value_set: set[tuple[Any, ...]]
    #: (type, display issues ignored, each coding's system, code and display) with no unknown code or display
    _codes_known: set[tuple[Any, ...]]

    def _binding(self, value: Any, code_type: str, plan: ElementPlan, expr: str, run: Run,
                 codings: list[Coded] | None = None) -> None:
        """`codings`: codings_of(value, code_type), when the caller has them already."""
        binding = plan.binding or {}
        strength, url = binding.get("strength"), binding.get("valueSet")
        if url == VITALS_UNITS and plan.path == "Observation.component.value[x]" and run.plans \
                and run.plans[-1].url.startswith(CORE_SD):
            strength = "extensible"
        if strength not in BINDING_SEVERITY or not url:
            return
        codings = codings_of(value, code_type) if codings is None else codings
        severity = BINDING_SEVERITY[strength]
        if not codings:
            if code_type == "CodeableConcept" and strength in ("required", "extensible"):
                run.add(severity, "code-invalid", expr, f"{plan.path}: no code given; a code from {url} is "
                                                        f"{'required' if strength == 'required' else 'expected'}.")
            return
        remembered = (url, *codings)
        if remembered in self._in_value_set:
            return
        expansion = self.terminology.expand(url)
        if expansion is None:
            if not self._ask_value_set(value, code_type, plan, url, expr, run):
                run.add("warning", "not-found", expr, f"{plan.path}: value set {url} is unknown, codes not checked.")
            return
        hits = [c for c in codings if in_codes(expansion.codes, c)]
        mark = len(run.findings)
        for system, code, display in hits:
            expected = expansion.codes.get((system, code)) if system else None
            # A display from a value set's list (LOINC, SNOMED CT, CVX codes we do not hold the system of) is the
            # value set's, not the code system's (R4 ValueSet.compose.include.concept.display: "in the context of
            # this valueset"): a difference is a warning. Code systems held completely: _known_codes.
            if display and expected and display.strip().lower() != expected.strip().lower() \
                    and (system is None or self.terminology.complete_codes(system) is None):
                run.add("warning", "value", expr, f"Display {display!r} for {system}#{code} should be {expected!r}.")
        if hits:
            if len(run.findings) == mark:  # in the value set, nothing to say: the same codings never need more
                remember(self._in_value_set, remembered)
            return
        unchecked = [c for c in codings if (c[0] or None) in expansion.systems_unknown or (c[0] is None)]
        if unchecked and not expansion.complete:
            if self._ask_value_set(value, code_type, plan, url, expr, run):
                return
            system = unchecked[0][0] or ", ".join(sorted(expansion.systems_unknown))
            run.add("warning", "not-supported", expr, f"{plan.path}: codes from {system} cannot be checked "
                                                      f"against {url} offline.")
            return
        shown = ", ".join(f"{s}#{c}" if s else str(c) for s, c, _ in codings)
        run.add(severity, "code-invalid", expr, f"{plan.path}: {shown} is not in the value set {url} "
                                                f"({strength} binding).")

    def _known_codes(self, value: dict[str, Any], code_type: str, expr: str, run: Run,
                     codings: list[Coded] | None = None) -> None:
        """A code from a code system we hold completely must exist in it, and a display given must be one of its
        displays: the HL7 validator's check (ValueSetValidator: an error, dispWarning(), unless the CLI's
        -display-issues-are-warnings; here the policy's display_issues)."""
        codings = codings_of(value, code_type) if codings is None else codings
        # the answer depends on these alone (codings_of keeps every coding _known_displays reads) and the policy
        remembered = (code_type, run.policy.display_issues == "ignore", *codings)
        if remembered in self._codes_known and not run.policy.tx_server:
            return
        mark = len(run.findings)
        displayed = False
        for system, code, display in codings:
            if not system or not code:
                continue
            codes = self.terminology.complete_codes(system)
            if codes is not None and code not in codes:
                run.add("error", "code-invalid", expr, f"Unknown code {code!r} in the code system {system}.")
            displayed |= codes is not None and display is not None
        if displayed and code_type != "Quantity" and run.policy.display_issues != "ignore":
            self._known_displays(value, code_type, expr, run)
        if run.policy.tx_server:  # the walk's hot path: nothing more without a server
            self._ask_codes(value, code_type, expr, run)
        elif len(run.findings) == mark:
            remember(self._codes_known, remembered)

    def _known_displays(self, value: dict[str, Any], code_type: str, expr: str, run: Run) -> None:
        """Each coding's display against its code system's (coding_paths' codings, without building them)."""
        codings = [value] if code_type == "Coding" else value.get("coding")
        for i, coding in enumerate(codings if isinstance(codings, list) else []):
            if not isinstance(coding, dict):
                continue
            display, system, code = coding.get("display"), coding.get("system"), coding.get("code")
            if not (isinstance(display, str) and isinstance(system, str) and isinstance(code, str)):
                continue
            known = self.terminology.displays(system, code)
            if known is not None and display.casefold() not in known[1]:
                where = expr if code_type == "Coding" else f"{expr}.coding[{i}]"
                run.add(run.policy.display_issues, "invalid", f"{where}.display",
                        f"Wrong display {display!r} for {system}#{code}: the code system gives {known[0]!r}.")

    def _member(self, value: Any, valueset: str) -> bool:
        """For a discriminator on a bound element: is some code of `value` in the value set?"""
        expansion = self.terminology.expand(valueset)
        if expansion is None:
            return False
        code_type = "CodeableConcept" if isinstance(value, dict) and "coding" in value else (
            "Coding" if isinstance(value, dict) else "code")
        return any(in_codes(expansion.codes, c) for c in codings_of(value, code_type))


def remember(answers: set[tuple[Any, ...]], key: tuple[Any, ...]) -> None:
    if len(answers) >= ANSWERS_KEPT:  # bounded: codings come from input
        answers.clear()
    answers.add(key)


def codings_of(value: Any, code_type: str) -> list[Coded]:
    """(system, code, display) of each coding in `value`; wrongly typed parts (reported elsewhere) are None."""
    if code_type in ("code", "string", "uri"):
        return [(None, value, None)] if isinstance(value, str) else []
    if not isinstance(value, dict):
        return []
    if code_type in ("Coding", "Quantity"):
        return [_coded(value)] if isinstance(value.get("code"), str) and value["code"] else []
    codings = value.get("coding")
    if not isinstance(codings, list):
        return []
    return [_coded(c) for c in codings if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _coded(coding: dict[str, Any]) -> Coded:
    """A coding's (system, code, display), a part that is not text None (the code is text: the caller made sure)."""
    system, display = coding.get("system"), coding.get("display")
    return (system if isinstance(system, str) else None, coding["code"],
            display if isinstance(display, str) else None)


def in_codes(codes: dict[tuple[str, str], str | None], coding: tuple[str | None, Any, str | None]) -> bool:
    system, code, _ = coding
    if system is None:
        return any(c == code for _, c in codes)
    return (system, code) in codes
