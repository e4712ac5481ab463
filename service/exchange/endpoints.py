"""EHR endpoints: what one is, and the YAML file (KFHIR_ENDPOINTS_FILE) that declares some, imported into the
database (service/exchange/registry.py), where every process reads them:

    endpoints:
      - name: hospital
        preset: hapi-public            # optional: base_url, auth and mode of a known sandbox
        base_url: https://ehr.example/fhir
        auth: {type: smart-backend, client_id: ketamine-bridge, key_file_env: EHR_KEY_FILE,
               scope: "system/*.cu system/*.rs"}
        mode: transaction              # transaction | batch | conditional
        max_entries: 100
        timeout_s: 30
        kinds: [treatment-plan, administration, adverse-event, assessment]

Secrets are never in the file nor in the database: both name the environment variables that hold them
(`password_env`, `token_env`, `key_file_env`), read by the process that sends, and nothing here logs or
returns their values.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from service.domain.kinds import NAMES as KINDS
from service.exchange.auth import Auth, Basic, Bearer, SmartBackend, key_id
from service.exchange.client import MODES

AUTH_TYPES = ("none", "basic", "bearer", "smart-backend")
#: Public sandboxes integrators test with, and what to know about them.
PRESETS: dict[str, dict[str, Any]] = {
    "hapi-public": {"base_url": "https://hapi.fhir.org/baseR4", "auth": {"type": "none"}, "mode": "transaction",
                    "note": "HAPI FHIR's public R4 server: open, shared and wiped regularly; never send real data."},
    "smart-health-it": {"base_url": "https://r4.smarthealthit.org", "auth": {"type": "none"}, "mode": "transaction",
                        "note": "SMART Health IT's open R4 sandbox; its launcher issues tokens for the protected "
                                "endpoint (use --bearer-token with sandbox-check)."},
    "firely": {"base_url": "https://server.fire.ly/r4", "auth": {"type": "none"}, "mode": "transaction",
               "note": "Firely Server's public R4 sandbox: open, shared; never send real data."},
}


class EndpointError(ValueError):
    """The endpoints file is malformed, or a secret it names is not in the environment."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    auth: dict[str, Any]
    mode: str = "transaction"
    max_entries: int = 100
    timeout_s: float = 30.0
    kinds: tuple[str, ...] = KINDS
    enabled: bool = True
    note: str = ""
    environ: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: set when read from the database: when and by what it was added, and when it was last enabled
    added_at: datetime | None = field(default=None, compare=False)
    added_by: str = field(default="", compare=False)
    enabled_at: datetime | None = field(default=None, compare=False)

    def public(self) -> dict[str, Any]:
        """What the API and the console show: everything but secrets (names of variables only)."""
        return {"name": self.name, "base_url": self.base_url, "auth": dict(self.auth), "mode": self.mode,
                "max_entries": self.max_entries, "timeout_s": self.timeout_s, "kinds": list(self.kinds),
                "enabled": self.enabled, "note": self.note, "added_at": _iso(self.added_at),
                "added_by": self.added_by, "enabled_at": _iso(self.enabled_at)}

    def why_not_queued(self, stored_at: datetime) -> str:
        """Why a record version stored at `stored_at` has no job for this endpoint (`push --all` says)."""
        if self.added_at is not None and stored_at < self.added_at:
            return "stored before this endpoint was added"
        if not self.enabled or (self.enabled_at is not None and stored_at < self.enabled_at):
            return "stored while this endpoint was disabled"
        return "not queued when stored"

    def credentials(self) -> Auth | None:
        kind = self.auth.get("type", "none")
        if kind == "none":
            return None
        if kind == "basic":
            return Basic(str(self.auth["user"]), self._secret("password_env"))
        if kind == "bearer":
            return Bearer(self._secret("token_env"))
        pem = Path(self._secret("key_file_env")).read_bytes()
        return SmartBackend(self.base_url, str(self.auth["client_id"]), pem, str(self.auth.get("kid") or key_id(pem)),
                            str(self.auth.get("scope", "system/*.cu system/*.rs")), self.auth.get("token_url"),
                            timeout=self.timeout_s)

    def _secret(self, key: str) -> str:
        variable = self.auth.get(key)
        value = self.environ.get(str(variable)) if variable else None
        if not value:
            raise EndpointError(f"endpoint {self.name}: the environment variable {variable!r} ({key}) is not set")
        return value


def load(path: Path | None, environ: dict[str, str] | None = None) -> list[Endpoint]:
    """The endpoints of `path` (none when no file is configured)."""
    if path is None:
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EndpointError(f"{path}: cannot read the endpoints file: {exc}") from None
    items = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise EndpointError(f"{path}: expected `endpoints:` with a list")
    env = dict(os.environ if environ is None else environ)
    out = [parse(item, f"{path.name}: endpoints[{i}]", env) for i, item in enumerate(items)]
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise EndpointError(f"{path}: endpoint names repeat: {names}")
    return out


#: names go in URLs (the console, the API) and in the outbox's endpoint column (64 characters)
NAME, NAME_MAX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*"), 64
ALLOWED = {"name", "preset", "base_url", "auth", "mode", "max_entries", "timeout_s", "kinds", "enabled", "note"}
AUTH_KEYS = {"none": {"type"}, "basic": {"type", "user", "password_env"}, "bearer": {"type", "token_env"},
             "smart-backend": {"type", "client_id", "key_file_env", "kid", "scope", "token_url"}}


def parse(item: Any, where: str, env: dict[str, str]) -> Endpoint:
    """One endpoint from its file form (the CLI's `endpoints add` builds the same), checked key by key."""
    if not isinstance(item, dict):
        raise EndpointError(f"{where}: expected a mapping")
    unknown = sorted(set(item) - ALLOWED)
    if unknown:
        raise EndpointError(f"{where}: unknown key(s) {', '.join(unknown)}")
    preset = PRESETS.get(item.get("preset", "")) if item.get("preset") else {}
    if item.get("preset") and not preset:
        raise EndpointError(f"{where}: unknown preset {item['preset']!r} (known: {', '.join(PRESETS)})")
    merged = {**(preset or {}), **{k: v for k, v in item.items() if k != "preset"}}
    name, base_url = merged.get("name"), merged.get("base_url")
    if not isinstance(name, str) or not name:
        raise EndpointError(f"{where}: every endpoint has a `name`")
    if len(name) > NAME_MAX or not NAME.fullmatch(name):
        raise EndpointError(f"{where} ({name}): a name is 1-{NAME_MAX} letters, digits, `.`, `_` or `-`")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise EndpointError(f"{where} ({name}): base_url must be an http(s) URL")
    auth = merged.get("auth") or {"type": "none"}
    kind = auth.get("type") if isinstance(auth, dict) else None
    if kind not in AUTH_TYPES:
        raise EndpointError(f"{where} ({name}): auth.type must be one of {', '.join(AUTH_TYPES)}")
    extra = sorted(set(auth) - AUTH_KEYS[kind])
    if extra:
        raise EndpointError(f"{where} ({name}): auth {kind} takes no {', '.join(extra)} "
                            f"(secrets go in environment variables named by *_env keys)")
    mode = merged.get("mode", "transaction")
    if mode not in MODES:
        raise EndpointError(f"{where} ({name}): mode must be one of {', '.join(MODES)}")
    kinds = tuple(merged.get("kinds") or KINDS)
    if not set(kinds) <= set(KINDS):
        raise EndpointError(f"{where} ({name}): kinds must be among {', '.join(KINDS)}")
    try:
        max_entries, timeout = int(merged.get("max_entries", 100)), float(merged.get("timeout_s", 30))
    except (TypeError, ValueError):
        raise EndpointError(f"{where} ({name}): max_entries and timeout_s are numbers") from None
    if max_entries < 1 or timeout <= 0:
        raise EndpointError(f"{where} ({name}): max_entries ≥ 1 and timeout_s > 0")
    return Endpoint(name, base_url.rstrip("/"), dict(auth), mode, max_entries, timeout, kinds,
                    bool(merged.get("enabled", True)), str(merged.get("note", "")), env)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() + "Z" if moment is not None else None
