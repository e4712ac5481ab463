"""Rules of particular datatypes that no StructureDefinition states: Attachment sizes and hashes, code and
identifier systems, as the HL7 validator checks them (InstanceValidator's type-specific checks)."""
from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from service.conformance.definitions import Definitions
from service.validation.run import Run

#: what a code or identifier system may start with (InstanceValidator.isSystemReferenceValid); `ldap:` only
#: for identifiers
SYSTEM_SCHEMES = ("http:", "https:", "urn:")
#: the spec's own namespace: a code system there must be one the spec defines (TERMINOLOGY_TX_SYSTEM_UNKNOWN)
HL7_FHIR = ("http://hl7.org/fhir/", "https://hl7.org/fhir/", "http://www.hl7.org/fhir/", "https://www.hl7.org/fhir/")
#: code systems whose URL is exactly this; a longer URL under it names no code system (TERMINOLOGY_TX_SYSTEM_INVALID)
EXACT_SYSTEMS = ("http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org",
                 "http://www.nlm.nih.gov/research/umls/rxnorm")


class Datatypes:
    """Mixed into the Validator: the checks that belong to a datatype, whatever profile holds it."""

    defs: Definitions

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
        if not system.startswith(SYSTEM_SCHEMES):
            run.add("error", "code-invalid", expr, f"Coding.system must be an absolute reference, not a local one "
                                                   f"({system}).")
            return
        held = self.defs.resolve(system)
        kind = held.get("resourceType") if held else None
        if kind == "ValueSet":
            run.add("error", "code-invalid", expr, f"{system} is a value set, not a code system: Coding.system "
                                                   f"names the code system.")
        elif any(system.startswith(s) and system != s for s in EXACT_SYSTEMS) and kind is None:
            run.add("error", "code-invalid", expr, f"{system} is not a code system: did you mean "
                                                   f"{next(s for s in EXACT_SYSTEMS if system.startswith(s))}?")
        elif system.startswith(HL7_FHIR) and kind is None and "/sid/" not in system \
                and not system.startswith("http://hl7.org/fhir/test"):
            run.add("error", "code-invalid", expr, f"{system} is not a code system FHIR defines.")
