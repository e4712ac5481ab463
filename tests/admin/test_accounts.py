"""Accounts core: argon2 hashes, the lockout kept in the database, and the session signing key."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from admin.support import PASSWORD, USER, WRONG
from argon2 import PasswordHasher
from sqlalchemy import select

from service.admin.accounts import LOCKOUT, MAX_FAILURES, AccountError, Accounts
from service.app.runtime import Runtime
from service.errors import ConfigError
from service.security.signing import NAME, SigningKey
from service.store.engine import session
from service.store.models import AdminAccountRow, AdminSecretRow

pytestmark = pytest.mark.both_backends  # the lockout row is locked and counted in the database; names are unique

NOW = datetime(2026, 3, 2, 14, 0)


def test_a_password_is_stored_as_an_argon2id_hash_only(runtime: Runtime) -> None:
    Accounts(runtime.engine).create("Alice ", PASSWORD)

    with session(runtime.engine) as s:
        row = s.scalars(select(AdminAccountRow)).one()
    assert row.username == "alice"
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash


@pytest.mark.parametrize(("username", "password", "message"), [
    ("alice", "short", "at least 12 characters"),
    ("alice", " padded password ", "whitespace"),
    ("no spaces allowed", PASSWORD, "a username is"),
    ("", PASSWORD, "a username is"),
])
def test_bad_usernames_and_passwords_are_refused(runtime: Runtime, username: str, password: str, message: str) -> None:
    with pytest.raises(AccountError, match=message):
        Accounts(runtime.engine).create(username, password)


def test_a_username_is_taken_once(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    accounts.create(USER, PASSWORD)
    with pytest.raises(AccountError, match="exists already"):
        accounts.create(USER.upper(), PASSWORD)


def test_sign_in_checks_the_password(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    accounts.create(USER, PASSWORD)

    assert accounts.sign_in(USER, PASSWORD, NOW).ok
    assert not accounts.sign_in(USER, PASSWORD + "x", NOW).ok
    assert not accounts.sign_in("mallory", PASSWORD, NOW).ok


def test_five_failures_lock_the_username_for_15_minutes_even_against_the_right_password(runtime: Runtime) -> None:
    Accounts(runtime.engine).create(USER, PASSWORD)
    for attempt in range(MAX_FAILURES):
        result = Accounts(runtime.engine).sign_in(USER, "wrong password!", NOW + timedelta(seconds=attempt))
        assert (result.locked_until is None) == (attempt < MAX_FAILURES - 1)
    locked_at = NOW + timedelta(seconds=MAX_FAILURES - 1)

    # a new Accounts on a new engine: the lock is in the database, so a restart keeps it
    restarted = Runtime.build(runtime.settings)
    try:
        refused = Accounts(restarted.engine).sign_in(USER, PASSWORD, locked_at + LOCKOUT - timedelta(seconds=1))
        assert (refused.ok, refused.locked_until) == (False, locked_at + LOCKOUT)
        assert Accounts(restarted.engine).sign_in(USER, PASSWORD, locked_at + LOCKOUT).ok
    finally:
        restarted.engine.dispose()


def test_an_expired_lock_counts_failures_from_zero_again(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    for _ in range(MAX_FAILURES):
        accounts.sign_in(USER, "wrong password!", NOW)
    later = NOW + LOCKOUT + timedelta(minutes=1)

    assert accounts.sign_in(USER, "wrong password!", later).locked_until is None


def test_an_unknown_username_locks_too_so_a_lock_reveals_nothing(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    results = [accounts.sign_in("nobody", "wrong password!", NOW) for _ in range(MAX_FAILURES)]

    assert results[-1].locked_until == NOW + LOCKOUT


def test_success_resets_the_failure_count(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    accounts.create(USER, PASSWORD)
    for _ in range(MAX_FAILURES - 1):
        accounts.sign_in(USER, "wrong password!", NOW)
    assert accounts.sign_in(USER, PASSWORD, NOW).ok
    for _ in range(MAX_FAILURES - 1):
        assert accounts.sign_in(USER, "wrong password!", NOW).locked_until is None


def test_unlock_lifts_a_lock(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    accounts.create(USER, PASSWORD)
    for _ in range(MAX_FAILURES):
        accounts.sign_in(USER, "wrong password!", NOW)

    assert accounts.unlock(USER) and not accounts.unlock(USER)
    assert accounts.sign_in(USER, PASSWORD, NOW).ok


def test_sign_out_and_a_new_password_end_the_sessions_signed_before(runtime: Runtime) -> None:
    accounts = Accounts(runtime.engine)
    accounts.create(USER, PASSWORD)
    first = accounts.sign_in(USER, PASSWORD, NOW).session_version

    accounts.sign_out(USER)
    assert accounts.session_version(USER) != first
    second = accounts.session_version(USER)
    accounts.set_password(USER, PASSWORD + " two")
    assert accounts.session_version(USER) != second
    assert accounts.sign_in(USER, PASSWORD + " two", NOW).ok
    assert accounts.session_version("nobody") is None


def test_the_signing_key_is_generated_once_and_shared(runtime: Runtime) -> None:
    first = SigningKey(runtime.engine, None).get()
    second = SigningKey(runtime.engine, None).get()

    assert first == second and len(first) >= 32
    with session(runtime.engine) as s:
        # one row of that name: other generated secrets (the audit's pepper) live in the same table
        assert s.scalars(select(AdminSecretRow.value).where(AdminSecretRow.name == NAME)).all() == [first]


def test_a_configured_key_is_used_and_a_short_one_refused(runtime: Runtime) -> None:
    assert SigningKey(runtime.engine, "k" * 40).get() == "k" * 40
    with pytest.raises(ConfigError, match="KFHIR_SECRET_KEY"):
        SigningKey(runtime.engine, "short")



class HeldHasher(PasswordHasher):
    """A real argon2 hasher whose hash() then holds until `release`: a slow hash, for as long as the test needs."""

    def __init__(self, **parameters: Any) -> None:
        super().__init__(**parameters)
        self.hashing, self.release = threading.Event(), threading.Event()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        hashed = super().hash(password, salt=salt)
        self.hashing.set()
        self.release.wait(15)
        return hashed


@pytest.mark.parametrize("operation", ["create", "set_password", "sign_in_rehash"])
def test_a_password_is_hashed_before_its_write_so_other_writes_go_on_meanwhile(
        runtime: Runtime, operation: str) -> None:
    """A write holds the database's write lock from its start (SQLite: BEGIN IMMEDIATE; with group commit every
    writer of the process waits for it): an argon2 hash inside it held every other write up for its duration."""
    accounts = Accounts(runtime.engine)
    if operation != "create":
        accounts.hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # the rehash: other parameters
        accounts.create(USER, PASSWORD)
    held = accounts.hasher = HeldHasher(time_cost=1, memory_cost=16, parallelism=1)
    do = {"create": lambda: accounts.create("bob", PASSWORD), "set_password": lambda: accounts.set_password(USER, WRONG * 2),
          "sign_in_rehash": lambda: accounts.sign_in(USER, PASSWORD, NOW)}[operation]
    done: list[object] = []
    hashing = threading.Thread(target=lambda: done.append(do()))
    hashing.start()
    try:
        assert held.hashing.wait(10)
        started = time.monotonic()
        with runtime.resources.unit(write=True) as unit:  # another write, while the hash runs
            unit.write("Patient", "meanwhile", {"resourceType": "Patient"}, [], "POST")
        waited = time.monotonic() - started
    finally:
        held.release.set()
        hashing.join(30)
    assert waited < 5 and done, (waited, done)
    if operation == "sign_in_rehash":
        assert done[0].ok  # type: ignore[attr-defined]
    with session(runtime.engine) as s:
        row = s.scalars(select(AdminAccountRow).where(AdminAccountRow.username == ("bob" if operation == "create"
                                                                                    else USER))).one()
    assert held.verify(row.password_hash, WRONG * 2 if operation == "set_password" else PASSWORD)
    assert not held.check_needs_rehash(row.password_hash)


def test_a_password_set_while_a_sign_in_rehashes_the_old_one_stays_set(runtime: Runtime) -> None:
    """A reset meant to lock the old password out: the sign-in's rehash of that old password (hashed outside its
    write) must not write it back over the new one."""
    accounts = Accounts(runtime.engine)
    accounts.hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # the rehash: other parameters
    accounts.create(USER, PASSWORD)
    held = accounts.hasher = HeldHasher(time_cost=1, memory_cost=16, parallelism=1)
    signed: list[Any] = []
    signing = threading.Thread(target=lambda: signed.append(accounts.sign_in(USER, PASSWORD, NOW)))
    signing.start()
    try:
        assert held.hashing.wait(10)
        Accounts(runtime.engine).set_password(USER, WRONG * 2)  # the reset, while the old password is rehashed
    finally:
        held.release.set()
        signing.join(30)
    assert signed and signed[0].ok
    assert not Accounts(runtime.engine).sign_in(USER, PASSWORD, NOW).ok
    assert Accounts(runtime.engine).sign_in(USER, WRONG * 2, NOW).ok
