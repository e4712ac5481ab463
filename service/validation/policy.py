"""What a validation accepts beyond FHIR's own rules: by default what the HL7 reference validator accepts.

    ValidationPolicy()          the HL7 validator's defaults: `validate`, `$validate`
    ValidationPolicy.store()    what the FHIR facade holds a resource it stores to (service/app/runtime.py)
    policy.replace(unknown_extension="warning", ...)

Each field is a setting three ways: a `validate` flag, a `$validate` parameter and a KFHIR_VALIDATION_* variable
(service/config.py); the README's table names them. The HL7 validator's behaviour each default follows is cited
beside it (org.hl7.fhir.validation, InstanceValidator and the CLI's options).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Severities a policy may give a finding; "ignore" reports nothing.
SEVERITIES = ("error", "warning", "information", "ignore")
#: extensions the HL7 validator accepts whatever it is told: its tooling's
HL7_TOOLS = ("http://hl7.org/fhir/tools/StructureDefinition/",
             "http://hl7.org/fhir/StructureDefinition/structuredefinition-expression")
#: An extension domain that allows every extension (the HL7 CLI's -allow-any-extensions).
ANY = "*"


class PolicyError(ValueError):
    """A policy value that is not one of the allowed ones; the message names the setting."""


@dataclass(frozen=True)
class ValidationPolicy:
    #: a meta.profile naming a profile we do not hold. HL7: a warning (VALIDATION_VAL_PROFILE_UNKNOWN), the resource
    #: is still checked against its base type.
    unknown_profile: str = "warning"
    #: an extension whose definition cannot be found. HL7: an error (EXTENSION_EXT_UNKNOWN_NOTHERE) unless its URL
    #: starts with an allowed domain (-allow-extension-domain), or any is allowed (then a hint).
    unknown_extension: str = "error"
    #: URL prefixes of extensions accepted without a definition; "*" accepts any (-allow-any-extensions).
    extension_domains: tuple[str, ...] = ()
    #: judge a resource without meta.profile by our implementation guide's profile of its type. HL7 applies a
    #: profile only when the resource claims it, the user asks for it, or an IG declares it global: off.
    our_profiles: bool = False
    #: apply the profiles an ImplementationGuide we hold declares global for a resource type (HL7 does).
    global_profiles: bool = True

    def __post_init__(self) -> None:
        for name in ("unknown_profile", "unknown_extension"):
            if getattr(self, name) not in SEVERITIES:
                raise PolicyError(f"{name} must be one of {', '.join(SEVERITIES)}, not {getattr(self, name)!r}")
        if isinstance(self.extension_domains, str) or not all(isinstance(d, str) and d
                                                              for d in self.extension_domains):
            raise PolicyError("extension_domains must be a list of URL prefixes")

    @classmethod
    def store(cls) -> ValidationPolicy:
        """What the FHIR facade holds a resource to before storing it: our profile of its type when it names none,
        an unknown profile refused (it could not be checked), an unknown extension kept with a warning."""
        return cls(unknown_profile="error", unknown_extension="warning", our_profiles=True)

    def replace(self, **changes: Any) -> ValidationPolicy:
        return dataclasses.replace(self, **changes)

    def extension_severity(self, url: str) -> str:
        """How to report an extension whose definition is not held: an allowed domain says nothing, "*" a hint.
        The HL7 validator always accepts DICOM's (nema.org) and its own tooling's (isKnownExtension)."""
        if any(url.startswith(domain) for domain in self.extension_domains if domain != ANY) \
                or "nema.org" in url or url.startswith(HL7_TOOLS):
            return "ignore"
        if ANY in self.extension_domains:
            return "information"
        return self.unknown_extension


def domains(text: str | Iterable[str]) -> tuple[str, ...]:
    """Extension domains from a setting: comma or space separated, or already a list."""
    parts = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if p.strip())
