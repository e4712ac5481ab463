"""Example URLs (example.org, acme.com...) in canonical elements, which the HL7 validator refuses unless they resolve.

org.hl7.fhir.validation InstanceValidator.validateReference: a `canonical` value (not a defining URL such as
CodeSystem.url, which is a uri in R4) that does not resolve is TYPE_SPECIFIC_CHECKS_DT_URL_EXAMPLE, an error
("Example URLs are not allowed in this context"), when BaseValidator.isExampleUrl says it is one, unless the CLI's
-allow-example-urls. uri and url values are not refused: the CLI's fetcher (StandAloneValidatorFetcher.resolveURL)
accepts any uri or url outside hl7.org, so only canonicals reach the rule.
"""
from __future__ import annotations

_HOSTS = ("example.org", "acme.com", "acme.org", "example.com", "example.net")
_SEGMENTS = tuple(host + "/" for host in _HOSTS)


def is_example_url(url: str) -> bool:
    """BaseValidator.isExampleUrl: one of the example domains followed by a slash anywhere, or at the end, or an
    OID under the example arcs."""
    return any(s in url for s in _SEGMENTS) or url.endswith(_HOSTS) \
        or url.startswith(("urn:oid:1.3.6.1.4.1.32473.", "urn:oid:2.999."))
