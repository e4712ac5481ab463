"""Admin accounts: argon2 password hashes, sign-in with a per-username lockout recorded in the database."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from service.store.engine import session
from service.store.models import AdminAccountRow, AdminThrottleRow
from service.store.records import utcnow

#: Failed attempts for one username before it is locked ...
MAX_FAILURES = 5
#: ... and for how long (sign-in refused even with the right password meanwhile).
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
#: argon2id with the library's defaults (RFC 9106's second recommended option: 64 MiB, t=3, p=4): the command
#: line's, and the console's with up to two web processes.
HASHER = PasswordHasher()
#: What the web processes of one host may spend on password hashes at once (each hashes one at a time,
#: service/web/limits.py): 16 concurrent sign-ins at 64 MiB each once took a worker from 160 MB to 1.13 GB.
HASHING_BUDGET_KIB = 128 * 1024
#: OWASP's floor for argon2id (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1)
MIN_MEMORY_KIB = 19 * 1024


def hasher_for(workers: int, base: PasswordHasher | None = None) -> PasswordHasher:
    """The hasher for a service of `workers` web processes: `base` (HASHER) while the budget allows, else less
    memory with OWASP's matching time cost (t=2). A hash records its parameters, so every hash verifies whatever
    the current ones are, and a sign-in rehashes to them (check_needs_rehash)."""
    base = base or HASHER
    memory = HASHING_BUDGET_KIB // max(workers, 1)
    return base if base.memory_cost <= memory else _smaller(max(memory, MIN_MEMORY_KIB))


@functools.cache
def _smaller(memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=2, memory_cost=memory_kib, parallelism=1)


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the username is unknown, so a miss costs as long as a wrong password."""
    return hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A username or password that cannot be used; the message says why."""


@dataclass(frozen=True)
class SignIn:
    """The result of a sign-in attempt: `username` and `session_version` when it succeeded."""

    ok: bool
    username: str = ""
    session_version: int = 0
    locked_until: datetime | None = None


def normalize(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalize(username)
    if not USERNAME.match(name):
        raise AccountError("a username is 1 to 64 letters, digits or . _ @ -, starting with a letter or digit")
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise AccountError("a password may not start or end with whitespace")


class Accounts:
    def __init__(self, engine: Engine, workers: int = 1) -> None:
        """`workers`: the web processes of this service (KFHIR_WORKERS), which choose the hashing cost."""
        self.engine = engine
        self.hasher = hasher_for(workers)

    def create(self, username: str, password: str) -> str:
        """Add an account; AccountError if the name is taken or the password too weak."""
        name = check_username(username)
        check_password(password)
        # hashed before the write begins: a write holds the database's write lock from its start (SQLite: BEGIN
        # IMMEDIATE, and with group commit every writer of this process waits for it)
        hashed = self.hasher.hash(password)
        try:
            with session(self.engine, write=True) as s:
                s.add(AdminAccountRow(username=name, password_hash=hashed, session_version=1, created_at=utcnow()))
        except IntegrityError:
            raise AccountError(f"an account named {name!r} exists already") from None
        return name

    def set_password(self, username: str, password: str) -> None:
        """Replace the password; sessions signed in with the old one end."""
        check_password(password)
        hashed = self.hasher.hash(password)
        with session(self.engine, write=True) as s:
            row = s.scalars(select(AdminAccountRow).where(AdminAccountRow.username == normalize(username))).first()
            if row is None:
                raise AccountError(f"no account named {normalize(username)!r}")
            row.password_hash = hashed
            row.session_version += 1

    def usernames(self) -> list[str]:
        with session(self.engine) as s:
            return list(s.scalars(select(AdminAccountRow.username).order_by(AdminAccountRow.username)))

    def exists(self) -> bool:
        with session(self.engine) as s:
            return s.scalars(select(AdminAccountRow.pk).limit(1)).first() is not None

    def session_version(self, username: str) -> int | None:
        """The account's current session version, None if it is gone: what each request compares."""
        with session(self.engine) as s:
            found = s.scalars(select(AdminAccountRow.session_version)
                              .where(AdminAccountRow.username == username)).first()
            return found

    def sign_out(self, username: str) -> None:
        """End every session of `username` (its cookies stop being accepted)."""
        with session(self.engine, write=True) as s:
            s.execute(update(AdminAccountRow).where(AdminAccountRow.username == username)
                      .values(session_version=AdminAccountRow.session_version + 1))

    def unlock(self, username: str) -> bool:
        with session(self.engine, write=True) as s:
            row = s.get(AdminThrottleRow, normalize(username))
            if row is None:
                return False
            s.delete(row)
            return True

    def sign_in(self, username: str, password: str, now: datetime | None = None) -> SignIn:
        """Check a password unless the username is locked; failures count towards the lockout."""
        now = now or utcnow()
        name = normalize(username)[:64]
        locked = self._locked_until(name, now)
        if locked is not None:
            return SignIn(False, locked_until=locked)
        with session(self.engine) as s:
            row = s.scalars(select(AdminAccountRow).where(AdminAccountRow.username == name)).first()
        verified = _verify(self.hasher, row.password_hash if row is not None else _dummy_hash(self.hasher), password)
        if row is None or not verified:
            return SignIn(False, locked_until=self._failed(name, now))
        self._succeeded(row, password, now)
        return SignIn(True, row.username, row.session_version)

    # --- the throttle ------------------------------------------------------------------------

    def _locked_until(self, name: str, now: datetime) -> datetime | None:
        with session(self.engine) as s:
            row = s.get(AdminThrottleRow, name)
            if row is not None and row.locked_until is not None and row.locked_until > now:
                return row.locked_until
        return None

    def _failed(self, name: str, now: datetime) -> datetime | None:
        """Count a failure (atomically, in the database); the lock's end when this one earned it."""
        for _ in range(2):  # a concurrent first failure may insert the row between our look and our insert
            try:
                with session(self.engine, write=True) as s:
                    row = s.get(AdminThrottleRow, name, with_for_update=True)
                    if row is None:
                        row = AdminThrottleRow(username=name, failures=0, last_failure_at=now)
                        s.add(row)
                    elif row.locked_until is not None and row.locked_until <= now:
                        row.failures, row.locked_until = 0, None  # an expired lock: counting starts again
                    row.failures += 1
                    row.last_failure_at = now
                    if row.failures >= MAX_FAILURES:
                        row.locked_until = now + LOCKOUT
                    return row.locked_until
            except IntegrityError:
                continue
        return None

    def _succeeded(self, row: AdminAccountRow, password: str, now: datetime) -> None:
        rehashed = None
        if self.hasher.check_needs_rehash(row.password_hash):  # parameters changed since it was hashed
            rehashed = self.hasher.hash(password)
        with session(self.engine, write=True) as s:
            found = s.get(AdminThrottleRow, row.username)
            if found is not None:
                s.delete(found)
            s.execute(update(AdminAccountRow).where(AdminAccountRow.pk == row.pk).values(last_sign_in_at=now))
            if rehashed is not None:  # only over the hash it verified: a password set while it hashed stays set
                s.execute(update(AdminAccountRow).where(AdminAccountRow.pk == row.pk,
                                                        AdminAccountRow.password_hash == row.password_hash)
                          .values(password_hash=rehashed))


def _verify(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
