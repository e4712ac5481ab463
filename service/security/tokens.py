"""JWT access tokens from a configured OAuth issuer: signature against its JWKS, exp, aud, iss (PyJWT).

Keys are cached as long as the JWKS response's Cache-Control max-age allows (RFC 9111 §5.2.2.1;
DEFAULT_TTL_S without one, never when no-store); a token signed with a key id the cache lacks
refetches once, at most every REFETCH_MIN_S, so a rotated key works at once and a flood of made-up
key ids cannot make us hammer the issuer. Only asymmetric algorithms: `none` and HS* (whose
"key" would be public) are refused.
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
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
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
            except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError):
                continue  # a key type we cannot use (e.g. a symmetric one): skipped, the others stay usable
        now = time.monotonic()
        self._keys, self._fetched = keys, now
        self._expires = now + cache_seconds(response.headers.get("Cache-Control"))

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            if now >= self._expires or (kid not in self._keys and now - self._fetched >= REFETCH_MIN_S):
                self._fetch()
            found = self._keys.get(kid)
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
        client = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        if not isinstance(client, str) or not client:
            raise TokenError("the token names no client (client_id, azp or sub)")
        raw = claims.get("scope", claims.get("scp", ""))
        scopes = raw.split() if isinstance(raw, str) else [s for s in raw if isinstance(s, str)]
        return Claims(client, tuple(scopes), self.issuer)
