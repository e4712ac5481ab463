"""JWT access tokens from a configured OAuth issuer: signature against its JWKS, exp, aud, iss (PyJWT).

Keys are cached as long as the JWKS response's Cache-Control max-age allows (RFC 9111 §5.2.2.1;
DEFAULT_TTL_S without one, never when no-store); a token signed with a key id the cache lacks
refetches once, at most every REFETCH_MIN_S, so a rotated key works at once and a flood of made-up
key ids cannot make us hammer the issuer; a fetch that fails counts too (the keys held stay in use), and
no request waits for another's fetch: the lock guards the cache, never the network. Only asymmetric
algorithms: `none` and HS* (whose "key" would be public) are refused, and so are tokens valid for longer
than MAX_LIFETIME_S, scopes that are not a string (or a list of them) and client ids the audit reserves.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384"]
DEFAULT_TTL_S = 300
MAX_TTL_S = 24 * 3600
REFETCH_MIN_S = 30
TIMEOUT = (3.05, 5)
#: clock skew tolerated on exp/nbf/iat
LEEWAY_S = 30
#: the longest a token may still be valid when it reaches us: SMART backend services tokens live minutes (the
#: spec suggests at most 5); a 10-year token is a leaked credential waiting to happen
MAX_LIFETIME_S = 24 * 3600
#: client ids the audit trail uses for our own agents (the console's admins, outbox workers, pulls)
RESERVED_CLIENT_PREFIXES = ("admin:", "worker:", "pull:")
MAX_CLIENT_ID = 200
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class TokenError(Exception):
    """The token is not one we accept. The message is for our logs, never for the client."""


@dataclass(frozen=True)
class Claims:
    client_id: str
    scopes: tuple[str, ...]
    issuer: str


def cache_seconds(cache_control: str | None) -> int:
    """How long a JWKS response may be reused, from its Cache-Control header."""
    if not cache_control:
        return DEFAULT_TTL_S
    if re.search(r"\b(no-store|no-cache)\b", cache_control, re.IGNORECASE):
        return 0
    found = MAX_AGE.search(cache_control)
    return min(int(found.group(1)), MAX_TTL_S) if found else DEFAULT_TTL_S


class JwksCache:
    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.url = url
        self.session = session or requests.Session()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._expires = 0.0
        self._fetched = -float(REFETCH_MIN_S)  # when the last fetch began, failed ones too
        self._ttl = float(REFETCH_MIN_S)  # the last fetch's max-age (0: no-store, every token fetches)
        self._fetching = False
        self._lock = threading.Lock()

    def _fetch(self) -> tuple[dict[str, jwt.PyJWK], float]:
        """The issuer's keys and how long they may be kept (seconds); TokenError when they cannot be read."""
        try:
            response = self.session.get(self.url, timeout=TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise TokenError(f"the JWKS at {self.url} could not be read: {type(exc).__name__}") from None
        keys: dict[str, jwt.PyJWK] = {}
        for item in document.get("keys", []) if isinstance(document, dict) else []:
            try:
                keys[str(item.get("kid", ""))] = jwt.PyJWK(item)
            except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError, AttributeError):
                continue  # a key type we cannot use (e.g. a symmetric one): skipped, the others stay usable
        return keys, cache_seconds(response.headers.get("Cache-Control"))

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            due = now >= self._expires or (kid not in self._keys and now - self._fetched >= REFETCH_MIN_S)
            fetch = due and not self._fetching and now - self._fetched >= min(REFETCH_MIN_S, self._ttl)
            if fetch:  # this request fetches; the others use what the cache holds meanwhile
                self._fetching, self._fetched = True, now
            found = self._keys.get(kid)
        if fetch:
            try:
                keys, ttl = self._fetch()
            except TokenError:
                with self._lock:
                    self._fetching = False  # the keys held stay in use until a fetch succeeds
                raise
            with self._lock:
                self._keys, self._ttl, self._expires, self._fetching = keys, ttl, time.monotonic() + ttl, False
            found = keys.get(kid)
        if found is None:
            raise TokenError(f"no key {kid!r} in the issuer's JWKS")
        return found


class TokenVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str, session: requests.Session | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = JwksCache(jwks_url, session)

    def verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                raise TokenError(f"algorithm {header.get('alg')!r} is not accepted")
            key = self.jwks.key(str(header.get("kid", "")))
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[header["alg"]], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_S, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise TokenError(f"{type(exc).__name__}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # e.g. an EC algorithm on an RSA key
            raise TokenError(f"the token does not fit its key: {type(exc).__name__}") from None
        return Claims(_client(claims), _scopes(claims), self.issuer)


def _client(claims: dict[str, Any]) -> str:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp - time.time() > MAX_LIFETIME_S + LEEWAY_S:
        raise TokenError(f"the token is valid for longer than {MAX_LIFETIME_S} s")
    client = claims.get("client_id") or claims.get("azp") or claims.get("sub")
    if not isinstance(client, str) or not client or len(client) > MAX_CLIENT_ID:
        raise TokenError("the token names no client (client_id, azp or sub), or one too long")
    if client.startswith(RESERVED_CLIENT_PREFIXES):
        raise TokenError("the token's client id is one the audit reserves for our own agents")
    return client


def _scopes(claims: dict[str, Any]) -> tuple[str, ...]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return tuple(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise TokenError("the token's scope is neither a string nor a list of strings")
