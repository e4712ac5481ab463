"""API keys: `kfhir_<key id>_<secret>`, 256 random bits, stored as HMAC-SHA256 under a server secret.

A slow password hash (argon2) would cost tens of milliseconds on every request and buys nothing for a
key nobody chose: 256 random bits cannot be guessed offline. The HMAC key (the "pepper", generated once
and kept in the database like the session signing key) still means a leaked copy of the api_clients
table alone is not enough to test candidate keys. The key id, public, finds the row without a scan.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Engine, Row, bindparam, select
from sqlalchemy.exc import IntegrityError

from service.security.scopes import Grant, well_formed
from service.security.signing import stored_key
from service.store.engine import SHARED_READ, alone, session
from service.store.models import ApiClientRow
from service.store.records import utcnow

PREFIX = "kfhir_"
KEY = re.compile(r"^kfhir_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: the database secret keying every stored hash (see stored_key)
PEPPER = "api-key-pepper"
#: the client row of a key id, read the first time a process sees the key: a statement built once, its row read
#: without the ORM (which took most of the 0.5 ms an authentication cost)
_CLIENTS = ApiClientRow.__table__
BY_KEY_ID = select(_CLIENTS).where(_CLIENTS.c.key_id == bindparam("key_id"))
#: what every later request of that key reads of its row, so that a key revoked by any process (the CLI) stops at its
#: next request: its stored hash and whether it was revoked, on the driver's own cursor (5 µs in SQLite, where the
#: same through SQLAlchemy's Core took 95 µs), with the driver's parameter style
KEY_STATE = {"qmark": "SELECT key_hash, revoked_at FROM api_clients WHERE key_id = ?",
             "format": "SELECT key_hash, revoked_at FROM api_clients WHERE key_id = %s",
             "pyformat": "SELECT key_hash, revoked_at FROM api_clients WHERE key_id = %s"}
#: verified keys a process remembers (by key id; a key past this many is read in full again, as on first use)
MAX_VERIFIED = 10_000


class ClientError(ValueError):
    """A client name or scope list that cannot be used; the message says why."""


@dataclass(frozen=True)
class ApiClient:
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @cached_property
    def grant(self) -> Grant:
        """Made once: a verified key's client is remembered (ApiClients.authenticate), and with it its parsed scopes."""
        return Grant.of(self.scopes)


class ApiClients:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pepper: bytes | None = None
        self._mac: Any = None  # an HMAC keyed with the pepper, copied for each hash (keyed_hash)
        self._lock = threading.Lock()
        #: key id → the client its key was verified as, with the stored hash it was verified against (authenticate)
        self._verified: dict[str, tuple[str, ApiClient]] = {}
        self._key_state = KEY_STATE.get(engine.dialect.paramstyle)

    def pepper(self) -> bytes:
        """The hashing secret, read once (and made on first use): also keys patient hashes in the audit. Made when
        the app is built (Security.build) or, on a database migrated later, before a request's write (web/auth):
        making it is a write of its own, which cannot run inside a write's unit, where the audit asks for it."""
        if self._pepper is None:
            # stored_key is safe against a race (every caller gets the stored row), and may write: holding the
            # lock across that write deadlocks with a write unit whose audit hook asks for the pepper meanwhile
            found = stored_key(self.engine, PEPPER).encode()
            with self._lock:
                self._pepper = self._pepper or found
        return self._pepper

    def _hash(self, key: str) -> str:
        if self._mac is None:
            self._mac = hmac.new(self.pepper(), digestmod=hashlib.sha256)
        return keyed_hash(self._mac, key)

    def add(self, name: str, scopes: list[str]) -> str:
        """Create client `name` with `scopes`; returns its key, which is never stored or shown again."""
        name = check_name(name)
        check_scopes(scopes)
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = f"{PREFIX}{key_id}_{secret}"
        key_hash = self._hash(key)  # before the write: the first hash stores the pepper, a write of its own
        try:
            with session(self.engine, write=True) as s:
                s.add(ApiClientRow(name=name, key_id=key_id, key_hash=key_hash, scopes=" ".join(scopes),
                                   created_at=utcnow()))
        except IntegrityError:
            raise ClientError(f"a client named {name!r} exists already") from None
        return key

    def list(self) -> list[ApiClient]:
        with session(self.engine) as s:
            return [_client(r) for r in s.scalars(select(ApiClientRow).order_by(ApiClientRow.name))]

    def revoke(self, name: str) -> bool:
        """Revoke `name`'s key at once; False when there is no such active client."""
        with session(self.engine, write=True) as s:
            row = s.scalars(select(ApiClientRow).where(ApiClientRow.name == name.strip().lower())).first()
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
            self._verified.pop(row.key_id, None)  # this process's memory too (others read revoked_at every request)
            return True

    def authenticate(self, key: str) -> ApiClient | None:
        """The active client whose key this is; None for anything else (same answer for every failure).

        Every request reads the key's stored hash and revocation (a key revoked in any process stops at its next
        request) and compares the key's HMAC with that hash in constant time. What it skips once a process has
        verified the key is the rest of the row and the client built from it: remembered by the public key id with
        the hash it was verified against, used only while the stored hash is that same one."""
        found = KEY.match(key)
        if found is None:
            return None
        key_id, presented = found["id"], self._hash(key)
        remembered = self._verified.get(key_id)
        state = self._state(key_id) if remembered is not None else None
        if remembered is None or state is None or not hmac.compare_digest(state[0], remembered[0]):
            self._verified.pop(key_id, None)
            row = self._row(key_id)
            if row is None:
                return None
            state, remembered = (row.key_hash, row.revoked_at), (row.key_hash, _client(row))
        if state[1] is not None or not hmac.compare_digest(state[0], presented):
            self._verified.pop(key_id, None)
            return None
        if len(self._verified) < MAX_VERIFIED:
            self._verified[key_id] = remembered
        return remembered[1]

    def _state(self, key_id: str) -> tuple[str, Any] | None:
        """(stored hash, revoked_at) of `key_id`'s row, None without one: on the driver's cursor, in the request's
        read transaction when it has one."""
        if self._key_state is not None:  # None: a driver of another parameter style
            try:
                if SHARED_READ.get() is not None:
                    with session(self.engine) as s:
                        return _fetch(s.connection().connection.driver_connection, self._key_state, key_id)
                if self.engine.dialect.name == "sqlite":  # the pool's connection bare: a SELECT alone is its own
                    pooled = self.engine.raw_connection()  # transaction there (the Connection around it cost ~30 µs)
                    try:
                        return _fetch(pooled.driver_connection, self._key_state, key_id)
                    finally:
                        pooled.close()  # back to the pool (which rolls back: nothing is open)
                with alone(self.engine) as connection:
                    return _fetch(connection.connection.driver_connection, self._key_state, key_id)
            except Exception:  # noqa: BLE001, S110 - the driver's own error: again through SQLAlchemy, which then
                pass  # knows of it (a lost connection is invalidated) and raises it as its own
        row = self._row(key_id)
        return (row.key_hash, row.revoked_at) if row is not None else None

    def _row(self, key_id: str) -> Row[Any] | None:
        """The client row of `key_id`: in the request's read transaction when it has one (store/engine.reading), else
        on a connection of its own (store/engine.alone: no transaction around the one statement), without a Session,
        whose set-up cost as much as the lookup (~150 µs a request)."""
        if SHARED_READ.get() is not None:
            with session(self.engine) as s:
                return s.connection().execute(BY_KEY_ID, {"key_id": key_id}).first()
        with alone(self.engine) as connection:
            return connection.execute(BY_KEY_ID, {"key_id": key_id}).first()


def keyed_hash(mac: Any, text: str) -> str:
    """hmac.new(key, text.encode(), sha256).hexdigest() from `mac`, an HMAC keyed with `key` and given nothing yet:
    copied, its key's inner and outer pads are not derived again (~10 µs a hash, twice a write request)."""
    copy = mac.copy()
    copy.update(text.encode())
    return str(copy.hexdigest())


def _fetch(raw: Any, statement: str, key_id: str) -> tuple[str, Any] | None:
    """The row of `key_id` read by `statement` on `raw`, a driver's connection."""
    cursor = raw.cursor()
    try:
        cursor.execute(statement, (key_id,))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return (str(row[0]), row[1]) if row is not None else None


def _client(row: ApiClientRow | Row[Any]) -> ApiClient:
    return ApiClient(row.name, tuple(row.scopes.split()), row.created_at, row.revoked_at)


def check_name(name: str) -> str:
    cleaned = name.strip().lower()
    if not NAME.match(cleaned):
        raise ClientError("a client name is 1 to 64 letters, digits or . _ -, starting with a letter or digit")
    return cleaned


def check_scopes(scopes: list[str]) -> None:
    if not scopes:
        raise ClientError("give at least one scope, e.g. --scopes 'system/*.rs'")
    bad = [s for s in scopes if not well_formed(s)]
    if bad:
        raise ClientError(f"not a system scope this server grants: {', '.join(bad)} "
                          "(use system/Type.cruds, system/*.read, system/ketamine-records.write, …)")
