"""Request limits: URLs holding NUL refused; a per-client rate limit on /api and /fhir (429 with Retry-After).

Each web process keeps its own buckets (no shared state, no extra database write per request), so with
N processes a client gets at most N × the limit; the README's production section divides accordingly and
leaves a global cap to the proxy in front.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from flask import Flask, g, request

from service.errors import BadRequest, TooManyRequests

LIMITED = ("/api/", "/fhir")
#: buckets kept before full ones are forgotten, so many one-off callers cannot grow memory without end
MAX_BUCKETS = 10_000


class RateLimiter:
    """`per_minute` requests a minute per key, in bursts of at most `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when counted)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may pass (and is counted), else the seconds until one token is back."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                if len(self._buckets) > MAX_BUCKETS:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        refilled = [k for k, (tokens, then) in self._buckets.items()
                    if tokens + (now - then) * self.rate >= self.capacity]
        for key in refilled:
            del self._buckets[key]


def client_key() -> str:
    """The authenticated client when authentication has run, else the caller's address."""
    principal = g.get("principal")
    client = getattr(principal, "client_id", None) or g.get("client_id")
    return f"client:{client}" if client else f"address:{request.remote_addr}"


def refuse_nul() -> None:
    """A NUL character (%00) in the URL names nothing we hold, and PostgreSQL refuses it in any query."""
    if "\x00" in request.path or any("\x00" in k + v for k, v in request.args.items(multi=True)):
        raise BadRequest("The URL holds a NUL character (%00).")


def init_app(app: Flask, per_minute: int) -> None:
    """Register after authentication's hook, so the limit is per client, not per address."""
    app.before_request(refuse_nul)
    if per_minute <= 0:
        return
    limiter = RateLimiter(per_minute)
    app.extensions["kfhir_rate_limiter"] = limiter

    @app.before_request
    def throttle() -> None:
        if not request.path.startswith(LIMITED):
            return
        wait = limiter.take(client_key())
        if wait:
            raise TooManyRequests(f"More than {per_minute} requests a minute; try again later.",
                                  retry_after=math.ceil(wait))
