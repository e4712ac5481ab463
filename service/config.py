"""Settings, read once at start-up: defaults, then KFHIR_* environment, then explicit overrides."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from service.errors import ConfigError
from service.jsondoc import DEFAULT_MAX_ITEMS, DEFAULT_MAX_VALUES

if TYPE_CHECKING:
    from service.validation.policy import ValidationPolicy

#: Largest request body accepted (bytes); larger bodies get 413 before they are parsed.
DEFAULT_MAX_BODY = 5 * 1024 * 1024
#: Deepest JSON nesting accepted; FHIR resources never need more, attackers often try.
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_PAGE_SIZE = 50
#: JSON values one entry of a batch or transaction Bundle may bring: such a Bundle may hold KFHIR_MAX_BUNDLE_ENTRIES
#: times this (so the two limits cannot disagree). Measured: our IG's largest example resource holds 69 values and an
#: entry's fullUrl and request add 6 (tests/security/test_attack_validate.py checks it); the rest is room for what a
#: clinic adds. A 300-entry transaction of our examples holds about 13,000.
VALUES_PER_ENTRY = 100
MAX_PAGE_SIZE = 500
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: How a yes/no setting may be written.
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    """Every setting of the service; the README's table lists the same names."""

    #: Relative SQLite paths are resolved against the working directory (``make run`` uses the checkout).
    database_url: str = "sqlite:///instance/ketamine-fhir.db"
    log_level: str = "INFO"
    #: requests per minute each API client may make (per web process); 0: no limit, the development default
    rate_limit: int = 0
    #: `serve --production`: gunicorn worker processes, and seconds before a silent worker is killed and
    #: replaced, or before workers still finishing requests on SIGTERM are stopped
    workers: int = 2
    #: `serve --production`: requests each worker serves at once (gunicorn's gthread worker above 1, sync at 1)
    threads: int = 4
    #: SQLite: the writes a process has in hand share one transaction and one commit (service/store/group.py);
    #: false: each write commits on its own, one fsync each (to compare the two)
    group_commit: bool = True
    #: a read (GET, search, history) whose AuditEvent cannot be written: false, the default, answers 503 and discloses
    #: nothing unrecorded; true answers it and logs the failure (availability before the trail). Writes are always
    #: refused whole without their event (service/web/auth.py)
    answer_unaudited_reads: bool = False
    request_timeout: int = 60
    graceful_timeout: int = 30
    #: addresses of the TLS-terminating proxy, trusted for X-Forwarded-Proto (gunicorn forwarded_allow_ips)
    forwarded_allow_ips: str = "127.0.0.1"
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: the longest JSON array, and the most values in one JSON document, accepted (413 above, before any walk)
    max_json_items: int = DEFAULT_MAX_ITEMS
    max_json_values: int = DEFAULT_MAX_VALUES
    page_size: int = DEFAULT_PAGE_SIZE
    host: str = "127.0.0.1"
    port: int = 8080
    #: the service's public base URL (https://kfhir.hospital.example), used in fullUrl, links, Location and the
    #: audit instead of the request's Host header, which the caller chooses; empty: the Host header (development)
    base_url: str = ""
    #: entries a batch or transaction Bundle may have; more is 413. A transaction of our IG's examples costs about
    #: 4.7 ms of CPU an entry (tests/security/measure_attacks.py: 500 took 2.35 s); 300 keeps the largest one a
    #: client may send near 1.4 s, inside issue 20's bound of 2 s for any single request at the defaults
    max_bundle_entries: int = 300
    #: the EHR endpoints file (YAML, see service/exchange/endpoints.py); empty: none configured
    endpoints_file: str = ""
    #: OAuth issuer whose JWT access tokens are accepted (`iss`); empty: API keys only
    oauth_issuer: str = ""
    #: the `aud` those tokens must carry (this server's identifier at the issuer)
    oauth_audience: str = ""
    #: where the issuer publishes its signing keys (JWKS)
    oauth_jwks_url: str = ""
    #: the admin console's session signing key (service/security/signing.py); empty: one generated and kept in
    #: the database
    secret_key: str = field(default="", repr=False)
    #: mark the admin session cookie Secure even when the TLS-terminating proxy forwards plain HTTP
    secure_cookies: bool = False
    #: `$validate`'s policy (service/validation/policy.py; defaults: the HL7 validator's): how to report a
    #: meta.profile we do not hold, and an extension whose definition we do not hold (error, warning, information,
    #: ignore)
    validation_unknown_profile: str = "warning"
    validation_unknown_extension: str = "error"
    #: URL prefixes of extensions accepted without a definition (comma or space separated; * accepts any)
    validation_extension_domains: str = ""
    #: judge a resource without meta.profile by our profile of its type in `$validate` too
    validation_our_profiles: bool = False
    #: accept example URLs (example.org, acme.com) in canonicals that do not resolve (HL7: refused)
    validation_allow_example_urls: bool = False
    #: refuse a reference to a type the element does not allow even when its target is not here (HL7: off, its
    #: -assume-valid-rest-references)
    validation_assume_valid_rest_references: bool = False
    #: how a display that is not one of its code's (code system held completely, or tx server) is reported (HL7: error)
    validation_display_issues: str = "error"
    #: the FHIR terminology server `$validate` asks what offline expansion cannot answer (LOINC and SNOMED CT codes
    #: and displays, value sets we cannot expand); empty: none, terminology is checked offline only
    tx_url: str = ""
    #: other terminology servers a `$validate` call may name in its txServer parameter (comma or space separated
    #: base URLs); a call cannot send this service's requests anywhere else
    tx_allowed: str = ""
    #: seconds a terminology server's answer is waited for, after which the offline answer stands with a warning
    tx_timeout: int = 10

    def bundle_json_limits(self) -> tuple[int, int]:
        """(longest array, most values) of a batch or transaction Bundle's JSON: they grow with max_bundle_entries,
        so a Bundle at the entry limit is never refused by the others; every other body keeps max_json_items and
        max_json_values, the most one resource needs."""
        return (max(self.max_json_items, self.max_bundle_entries),
                max(self.max_json_values, self.max_bundle_entries * VALUES_PER_ENTRY))

    def validation_policy(self) -> ValidationPolicy:
        """The policy `$validate` runs with (a call's own parameters may change it)."""
        from service.validation.policy import ValidationPolicy, domains  # the validator loads on first use

        return ValidationPolicy(unknown_profile=self.validation_unknown_profile,
                                unknown_extension=self.validation_unknown_extension,
                                extension_domains=domains(self.validation_extension_domains),
                                our_profiles=self.validation_our_profiles, tx_server=self.tx_url or None,
                                tx_timeout=float(self.tx_timeout), display_issues=self.validation_display_issues,
                                allow_example_urls=self.validation_allow_example_urls,
                                assume_valid_rest_references=self.validation_assume_valid_rest_references)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from KFHIR_<NAME> variables, then `overrides` (keys are field names)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"KFHIR_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _coerce(f, raw)
        for name, value in (overrides or {}).items():
            if name not in {f.name for f in fields(cls)}:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"KFHIR_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        for name in ("max_body_bytes", "max_json_depth", "max_json_items", "max_json_values", "page_size", "port",
                     "max_bundle_entries"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"KFHIR_{name.upper()} must be a positive integer")
        oauth = {"KFHIR_OAUTH_ISSUER": self.oauth_issuer, "KFHIR_OAUTH_AUDIENCE": self.oauth_audience,
                 "KFHIR_OAUTH_JWKS_URL": self.oauth_jwks_url}
        if any(oauth.values()) and not all(oauth.values()):
            missing = ", ".join(k for k, v in oauth.items() if not v)
            raise ConfigError(f"JWT access tokens need issuer, audience and JWKS URL together: set {missing}")
        if self.base_url and (not self.base_url.startswith(("http://", "https://")) or "?" in self.base_url
                              or "#" in self.base_url or not self.base_url.isprintable()):
            raise ConfigError("KFHIR_BASE_URL must be an http:// or https:// URL without query or fragment")
        if not self.database_url.startswith(("sqlite:", "postgresql")):
            raise ConfigError("KFHIR_DATABASE_URL must be a sqlite:/// or postgresql:// URL")
        for name in ("workers", "threads", "request_timeout", "graceful_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"KFHIR_{name.upper()} must be a positive integer")
        from service.validation.policy import PolicyError
        from service.validation.policy import tx_url as is_tx_url

        for url in self.tx_servers():
            if url and not is_tx_url(url):
                raise ConfigError(f"KFHIR_TX_URL and KFHIR_TX_ALLOWED take http:// or https:// base URLs without "
                                  f"query or fragment, not {url!r}")
        if not 0 < self.tx_timeout <= 300:
            raise ConfigError("KFHIR_TX_TIMEOUT must be between 1 and 300 seconds")
        try:
            self.validation_policy()
        except PolicyError as exc:
            raise ConfigError(f"KFHIR_VALIDATION_{str(exc).split(' ', 1)[0].upper()} {str(exc).split(' ', 1)[1]}") \
                from None
        if self.rate_limit < 0:
            raise ConfigError("KFHIR_RATE_LIMIT must be 0 (no limit) or a positive number of requests per minute")

    def tx_servers(self) -> tuple[str, ...]:
        """The terminology servers a `$validate` call may name: KFHIR_TX_URL and KFHIR_TX_ALLOWED."""
        named = self.tx_allowed.replace(",", " ").split()
        return tuple(u.rstrip("/") for u in ([self.tx_url] if self.tx_url else []) + named)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(f: dataclasses.Field[Any], raw: str) -> Any:
    if f.type in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"KFHIR_{f.name.upper()} must be an integer, not {raw!r}") from None
    if f.type in ("bool", bool):
        if raw.strip().lower() not in TRUE + FALSE:
            raise ConfigError(f"KFHIR_{f.name.upper()} must be 1 or 0 (true or false), not {raw!r}")
        return raw.strip().lower() in TRUE
    return raw
