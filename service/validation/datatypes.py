"""Rules of particular datatypes that no StructureDefinition states: Attachment sizes and hashes, code and
identifier systems, as the HL7 validator checks them (InstanceValidator's type-specific checks)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from service.conformance.definitions import Definitions
from service.validation.references import as_list
from service.validation.run import Run
from service.validation.terminology import Terminology

#: what a code or identifier system may start with (InstanceValidator.isSystemReferenceValid); `ldap:` only
#: for identifiers
SYSTEM_SCHEMES = ("http:", "https:", "urn:")
#: the spec's own namespace: a code system there must be one the spec defines (TERMINOLOGY_TX_SYSTEM_UNKNOWN)
HL7_FHIR = ("http://hl7.org/fhir/", "https://hl7.org/fhir/", "http://www.hl7.org/fhir/", "https://www.hl7.org/fhir/")
#: code systems whose URL is exactly this; a longer URL under it names no code system (TERMINOLOGY_TX_SYSTEM_INVALID)
EXACT_SYSTEMS = ("http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org",
                 "http://www.nlm.nih.gov/research/umls/rxnorm")


#: R4 Identifier.system: "urn:ietf:rfc:3986 if the Identifier.value itself is a full uri"
URI_IDENTIFIER = "urn:ietf:rfc:3986"
#: systems whose verdict is remembered (it depends on the system alone); bounded, as systems come from input
SYSTEMS_KEPT = 10_000
ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Datatypes:
    """Mixed into the Validator: the checks that belong to a datatype, whatever profile holds it."""

    defs: Definitions
    terminology: Terminology
    _systems: dict[str, str | None]  # system → what is wrong with it as a Coding.system (None: nothing)

    def _concept_map(self, resource: dict[str, Any], expr: str, run: Run) -> None:
        """Each group's source and target codes exist in its code systems, where those are held completely (R4
        ConceptMap.group.element.code: "Identity (code or path) or the element/item being mapped")."""
        for g, group in enumerate(as_list(resource.get("group"))):
            if not isinstance(group, dict):
                continue
            source = self._codes_of(group.get("source"))
            target = self._codes_of(group.get("target"))
            for e, element in enumerate(as_list(group.get("element"))):
                where = f"{expr}.group[{g}].element[{e}]"
                code = element.get("code") if isinstance(element, dict) else None
                if source is not None and isinstance(code, str) and code not in source:
                    run.add("error", "code-invalid", f"{where}.code", f"The source code {code!r} is not in the code "
                                                                     f"system {group.get('source')}.")
                for t, mapped in enumerate(as_list(element.get("target")) if isinstance(element, dict) else []):
                    code = mapped.get("code") if isinstance(mapped, dict) else None
                    if target is not None and isinstance(code, str) and code not in target:
                        run.add("error", "code-invalid", f"{where}.target[{t}].code",
                                f"The target code {code!r} is not in the code system {group.get('target')}.")

    def _value_set(self, resource: dict[str, Any], expr: str, run: Run) -> None:
        """R4 ValueSet.compose.include.system: "An absolute URI which is the code system from which the selected
        codes come from" (so too in exclude)."""
        compose = resource.get("compose")
        for part in ("include", "exclude"):
            for i, include in enumerate(as_list(compose.get(part)) if isinstance(compose, dict) else []):
                system = include.get("system") if isinstance(include, dict) else None
                if isinstance(system, str) and not ABSOLUTE.match(system):
                    run.add("error", "invalid", f"{expr}.compose.{part}[{i}].system",
                            f"ValueSet.compose.{part}.system must be an absolute URI, not {system!r}.")
                elif isinstance(system, str) and "|" in system:  # a uri, not a canonical: the version has its own
                    run.add("error", "invalid", f"{expr}.compose.{part}[{i}].system",
                            f"ValueSet.compose.{part}.system is a URI without a |version ({system}): the version "
                            f"belongs in ValueSet.compose.{part}.version.")

    def _codes_of(self, system: Any) -> dict[str, str | None] | None:
        return self.terminology.complete_codes(system) if isinstance(system, str) else None

    def _datatype(self, value: dict[str, Any], code: str, expr: str, run: Run) -> None:
        if code == "Attachment":
            self._attachment(value, expr, run)
        elif code == "Coding":
            self._code_system(value.get("system"), f"{expr}.system", run)
        elif code == "CodeableConcept":
            codings = value.get("coding")
            for i, coding in enumerate(codings if isinstance(codings, list) else []):
                if isinstance(coding, dict):
                    self._code_system(coding.get("system"), f"{expr}.coding[{i}].system", run)
        elif code == "Identifier":
            system = value.get("system")
            if isinstance(system, str) and not system.startswith((*SYSTEM_SCHEMES, "ldap:")):
                run.add("error", "code-invalid", f"{expr}.system", f"Identifier.system must be an absolute "
                                                                  f"reference, not a local one ({system}).")
            value_ = value.get("value")
            if system == URI_IDENTIFIER and isinstance(value_, str) and not ABSOLUTE.match(value_):
                run.add("error", "value", f"{expr}.value", f"With the system {URI_IDENTIFIER} the value is itself a "
                                                           f"full URI, not {value_!r}.")

    def _attachment(self, value: dict[str, Any], expr: str, run: Run) -> None:
        """`size` is the number of bytes of the data, `hash` its SHA-1 (R4 Attachment); checked when the data is
        in the resource."""
        data = value.get("data")
        if not isinstance(data, str):
            return
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return  # not base64: the base64Binary check reports it
        size = value.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size != len(content):
            run.add("error", "structure", f"{expr}.size", f"Attachment.size is {size}, but the data has "
                                                          f"{len(content)} bytes.")
        digest = value.get("hash")
        if isinstance(digest, str):
            actual = base64.b64encode(hashlib.sha1(content).digest()).decode()  # noqa: S324 - R4 says SHA-1
            if digest != actual:
                run.add("error", "structure", f"{expr}.hash", f"Attachment.hash {digest} is not the SHA-1 of the "
                                                              f"data ({actual}).")

    def _code_system(self, system: Any, expr: str, run: Run) -> None:
        """A code system is named by an absolute URI (R4 Coding.system: "an absolute reference to a code system"),
        never a value set's URL, and one in the spec's namespace must be one the spec defines."""
        if not isinstance(system, str) or not system:
            return
        if system in self._systems:
            problem = self._systems[system]
        else:
            problem = self._system_problem(system)
            if len(self._systems) < SYSTEMS_KEPT:
                self._systems[system] = problem
        if problem:
            run.add("error", "code-invalid", expr, problem)

    def _system_problem(self, system: str) -> str | None:
        if not system.startswith(SYSTEM_SCHEMES):
            return f"Coding.system must be an absolute reference, not a local one ({system})."
        held = self.defs.resolve(system)
        kind = held.get("resourceType") if held else None
        if kind == "ValueSet":
            return f"{system} is a value set, not a code system: Coding.system names the code system."
        if any(system.startswith(s) and system != s for s in EXACT_SYSTEMS) and kind is None:
            return f"{system} is not a code system: did you mean " \
                   f"{next(s for s in EXACT_SYSTEMS if system.startswith(s))}?"
        if system.startswith(HL7_FHIR) and kind is None and "/sid/" not in system \
                and not system.startswith("http://hl7.org/fhir/test"):
            return f"{system} is not a code system FHIR defines."
        return None
