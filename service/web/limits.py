"""Request limits: URLs holding NUL refused; a per-client rate limit on /api and /fhir (429 with Retry-After);
failed authentications per address on /api and /fhir, and console sign-ins per address and per username,
refused before any key is looked up or password hashed; one password hash at a time on this machine (HashingSlot).

Each web process keeps its own buckets (no shared state, no extra database write per request), so with
N processes a client gets at most N × the limit; the README's production section divides accordingly and
leaves a global cap to the proxy in front.
"""
from __future__ import annotations

import fcntl
import hashlib
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, current_app, g, render_template, request
from sqlalchemy.engine import make_url

from service.admin.accounts import MAX_FAILURES, normalize
from service.errors import BadRequest, TooManyRequests

LIMITED = ("/api/", "/fhir")
#: buckets kept before full ones are forgotten, so many one-off callers cannot grow memory without end
MAX_BUCKETS = 10_000
#: failed authentications a minute one address may make on /api and /fhir; past them its requests are refused
#: (429) before the token is even looked at: 45 `Bearer junk` once made 45 401s and 45 audit rows
FAILED_AUTH_PER_MINUTE = 30
#: console sign-ins a minute per address, and per username, refused before a hash is computed. The database locks
#: a username after MAX_FAILURES failures (checked before hashing too, one sign-in at a time), and its messages
#: (locked; unlocked, then signed in) still reach a user within this budget
SIGN_IN_PER_ADDRESS = 10
SIGN_IN_PER_USERNAME = 2 * MAX_FAILURES
#: seconds a sign-in waits for this process's one password hash at a time (argon2 takes 64 MiB) before 503
HASH_WAIT_S = 1.5


class HashingSlot:
    """One password hash at a time among the service's processes on this machine: a sign-in hashing in another
    process gets 503 at once instead of waiting, since a gunicorn sync worker that waits or hashes serves nobody
    else. (32 sign-ins of one address, 16 at a time, within its budget of 10 per worker, kept another client's
    read waiting 7.4 s at load 9, 14 s at load 12: every worker was hashing.) Within a process threads wait for it
    (HASH_WAIT_S). The lock is an flock on a file named for the database (beside a SQLite one): the service's
    processes share it."""

    def __init__(self, service: str) -> None:
        url = make_url(service)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            self.path = Path(f"{url.database}.sign-in.lock")  # beside the database, whose folder SQLite writes to
        else:
            digest = hashlib.sha256(service.encode()).hexdigest()[:16]
            self.path = Path(tempfile.gettempdir()) / f"kfhir-sign-in-{digest}.lock"
        self._threads = threading.BoundedSemaphore(1)
        self._fd: tuple[int, int] | None = None  # (process id, descriptor): opened in each worker after the fork

    def acquire(self, timeout: float) -> bool:
        if not self._threads.acquire(timeout=timeout):
            return False
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another process is hashing (BlockingIOError), or no lock file can be had
            self._threads.release()
            return False
        return True

    def release(self) -> None:
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _descriptor(self) -> int:
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600))
        return self._fd[1]


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

    def waiting(self, key: str) -> float:
        """0 when `key` has a token left (none is taken), else the seconds until one is back."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

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


def auth_failures() -> RateLimiter:
    """Failed authentications per address (service/web/auth.py takes one per 401, and refuses an empty bucket)."""
    found: RateLimiter = current_app.extensions["kfhir_auth_failures"]
    return found


def throttle_sign_in() -> Response | None:
    """Before the console's sign-in is handled: 429 past the per-address or per-username budget, 503 while another
    process hashes or this one's hash is taken for longer than HASH_WAIT_S (released at teardown)."""
    if request.endpoint != "admin.sign_in" or request.method != "POST":
        return None
    limiters: tuple[RateLimiter, RateLimiter, HashingSlot] = current_app.extensions["kfhir_sign_in"]
    by_address, by_username, hashing = limiters
    wait = by_address.take(f"address:{request.remote_addr}") or \
        by_username.take(f"user:{normalize(request.form.get('username', ''))[:64]}")
    if wait:
        return _refused(429, "Too many sign-in attempts; try again in a minute.", math.ceil(wait))
    if not hashing.acquire(timeout=HASH_WAIT_S):
        return _refused(503, "The console is busy signing someone in; try again in a moment.", 1)
    g.kfhir_hashing = hashing
    return None


def _release_hashing(_: BaseException | None) -> None:
    hashing = g.pop("kfhir_hashing", None)
    if hashing is not None:
        hashing.release()


def _refused(status: int, detail: str, retry_after: int) -> Response:
    title = "Too Many Requests" if status == 429 else "Service Unavailable"
    response = Response(render_template("admin/error.html", status=status, title=title, detail=detail), status)
    response.headers["Retry-After"] = str(retry_after)
    return response


def init_app(app: Flask, per_minute: int, service: str) -> None:
    """Register after authentication's hook, so the limit is per client, not per address; `service` names the
    processes that share one password hash at a time (the database URL)."""
    app.before_request(refuse_nul)
    app.extensions["kfhir_auth_failures"] = RateLimiter(FAILED_AUTH_PER_MINUTE)
    app.extensions["kfhir_sign_in"] = (RateLimiter(SIGN_IN_PER_ADDRESS), RateLimiter(SIGN_IN_PER_USERNAME),
                                       HashingSlot(service))
    app.before_request(throttle_sign_in)
    app.teardown_request(_release_hashing)
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
