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
    #: a FHIR terminology server asked what offline expansion cannot answer (remote.py); None: none. HL7's CLI
    #: asks tx.fhir.org unless told `-tx n/a`; a service must not send its traffic anywhere unasked: none.
    tx_server: str | None = None
    #: seconds a terminology server's answer is waited for (then the offline answer, and a warning)
    tx_timeout: float = 10.0
    #: accept example URLs (example.org, acme.com) in canonicals that do not resolve. HL7: refused (an error) unless
    #: -allow-example-urls (urls.py).
    allow_example_urls: bool = False
    #: a display that is not one of its code's, in a code system held completely or by the terminology server. HL7:
    #: an error (ValueSetValidator.dispWarning) unless -display-issues-are-warnings. A display that differs only from
    #: a value set's list (LOINC, SNOMED CT or CVX offline) is a warning whatever this says (bindings.py).
    display_issues: str = "error"
    #: read a literal reference's type from the reference itself when its target cannot be resolved (not contained,
    #: not in the Bundle), and refuse a type the element does not allow. HL7: only with -assume-valid-rest-references
    #: (InstanceValidator.checkReference, REFERENCE_REF_BADTARGETTYPE2); otherwise a target type is checked only
    #: for a target it resolves. R4 says the target SHALL be one of the listed types (references.html), so the
    #: facade's policy checks it (store()).
    assume_valid_rest_references: bool = False

    def __post_init__(self) -> None:
        for name in ("unknown_profile", "unknown_extension", "display_issues"):
            if getattr(self, name) not in SEVERITIES:
                raise PolicyError(f"{name} must be one of {', '.join(SEVERITIES)}, not {getattr(self, name)!r}")
        if isinstance(self.extension_domains, str) or not all(isinstance(d, str) and d
                                                              for d in self.extension_domains):
            raise PolicyError("extension_domains must be a list of URL prefixes")
        # a tuple whatever was given: a policy is part of the validator's memo keys (coded.py), so it must hash
        object.__setattr__(self, "extension_domains", tuple(self.extension_domains))
        if self.tx_server is not None and not tx_url(self.tx_server):
            raise PolicyError(f"tx_server must be an http:// or https:// URL without query or fragment, or n/a for "
                              f"none, not {self.tx_server!r}")
        if not isinstance(self.tx_timeout, (int, float)) or not 0 < self.tx_timeout <= 300:
            raise PolicyError("tx_timeout must be a number of seconds between 0 and 300")
        # the hash of its fields, worked out once: the memo keys hash it on every look-up (dozens a record)
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self))))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined, no-any-return]  # set once in __post_init__

    @classmethod
    def store(cls) -> ValidationPolicy:
        """What the FHIR facade holds a resource to before storing it: our profile of its type when it names none,
        an unknown profile refused (it could not be checked), an unknown extension kept with a warning, example URLs
        kept (refusing them is the HL7 publication policy, not an R4 rule), a wrong display kept with a warning (the
        code decides what a coding means; the display only shows it), a reference to a type the element does not
        allow refused even when its target is not here (R4: the target SHALL be of a listed type)."""
        return cls(unknown_profile="error", unknown_extension="warning", our_profiles=True, allow_example_urls=True,
                   display_issues="warning", assume_valid_rest_references=True)

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


#: What the HL7 CLI's `-tx n/a` means, and our flags and parameters too: no terminology server.
NO_TX = "n/a"


def tx_url(text: str) -> bool:
    """An http(s) base URL with a host, no query, fragment or credentials: all a terminology server needs."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment \
        and parts.username is None and text.isprintable() and " " not in text
