"""API keys: made once, stored only as a keyed hash, refused once revoked (both backends)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from service.app.runtime import Runtime
from service.security.keys import ApiClients, ClientError, keyed_hash
from service.store.engine import make_engine, session
from service.store.models import ApiClientRow


@pytest.fixture
def clients(runtime: Runtime) -> ApiClients:
    return ApiClients(runtime.engine)


def test_a_key_authenticates_its_client_with_its_scopes(clients: ApiClients) -> None:
    key = clients.add("Lab-Feed", ["system/Observation.cruds", "system/Patient.rs"])
    assert key.startswith("kfhir_") and len(key) > 60
    found = clients.authenticate(key)
    assert found is not None and found.name == "lab-feed"
    assert found.grant.allows("Observation", "c") and not found.grant.allows("Patient", "c")


def test_the_key_is_stored_only_as_a_keyed_hash(clients: ApiClients, runtime: Runtime) -> None:
    key = clients.add("ehr", ["system/*.rs"])
    secret = key.rsplit("_", 1)[1]
    with session(runtime.engine) as s:
        row = s.scalars(select(ApiClientRow).where(ApiClientRow.name == "ehr")).one()
        stored = (row.key_id, row.key_hash, row.scopes)
    assert secret not in "".join(stored) and key not in "".join(stored)
    import hashlib

    assert stored[1] != hashlib.sha256(key.encode()).hexdigest()  # keyed: a plain hash would not do


@pytest.mark.parametrize("text", ["kfhir_0123456789abcdef_" + "A" * 43, "", "urn:oid:1.2|MRN-1", "ü|Zoë 中"])
def test_a_keyed_hash_is_the_hmac_of_its_text_however_often_its_mac_is_used(text: str) -> None:
    """keyed_hash copies an HMAC keyed once instead of keying one per hash: the same digest, and a copy's update never
    reaches the keyed original (the second and third hash with it are the first's)."""
    import hashlib
    import hmac

    mac = hmac.new(b"pepper" * 8, digestmod=hashlib.sha256)
    expected = hmac.new(b"pepper" * 8, text.encode(), hashlib.sha256).hexdigest()
    assert [keyed_hash(mac, text) for _ in range(3)] == [expected] * 3
    assert keyed_hash(mac, "other") == hmac.new(b"pepper" * 8, b"other", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("tampered", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),   # one character of the secret
    lambda k: k.replace("kfhir_", "kfhix_"),
    lambda k: k[:30],
    lambda k: "kfhir_0000000000000000_" + k.rsplit("_", 1)[1],  # the secret under another key id
])
def test_anything_but_the_exact_key_is_refused(clients: ApiClients, tampered: object) -> None:
    key = clients.add("ehr", ["system/*.rs"])
    assert clients.authenticate(tampered(key)) is None  # type: ignore[operator]


def test_revoked_keys_are_refused_and_listed_as_revoked(clients: ApiClients) -> None:
    key = clients.add("old-feed", ["system/*.rs"])
    assert clients.revoke("OLD-FEED")
    assert clients.authenticate(key) is None
    assert not clients.revoke("old-feed")  # once
    listed = {c.name: c for c in clients.list()}
    assert listed["old-feed"].revoked_at is not None


@pytest.mark.parametrize(("name", "scopes", "message"), [
    ("", ["system/*.rs"], "client name"),
    ("has space", ["system/*.rs"], "client name"),
    ("ok", [], "at least one scope"),
    ("ok", ["patient/*.rs"], "not a system scope"),
    ("ok", ["system/Patient.rs?identifier=x"], "not a system scope"),
])
def test_unusable_names_and_scopes_are_refused(clients: ApiClients, name: str, scopes: list[str],
                                                message: str) -> None:
    with pytest.raises(ClientError, match=message):
        clients.add(name, scopes)


@pytest.mark.both_backends  # a unique constraint
def test_a_name_is_taken_once(clients: ApiClients) -> None:
    clients.add("ehr", ["system/*.rs"])
    with pytest.raises(ClientError, match="exists already"):
        clients.add("EHR", ["system/*.rs"])


def test_the_pepper_is_made_without_holding_the_clients_lock(runtime: Runtime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Making the pepper may write; a thread holding the lock while it waits for the writers' turn deadlocks with a
    write unit whose audit hook asks for the pepper (the group-commit review, 12-05)."""
    from service.security import keys

    fresh = ApiClients(runtime.engine)
    held: list[bool] = []

    def stored(engine: object, name: str) -> str:
        held.append(fresh._lock.locked())
        return "a-pepper"

    monkeypatch.setattr(keys, "stored_key", stored)
    assert fresh.pepper() == b"a-pepper" and fresh.pepper() == b"a-pepper"
    assert held == [False]  # made once, outside the lock


@pytest.fixture
def elsewhere(runtime: Runtime) -> Iterator[ApiClients]:
    """The clients as another process sees them (the CLI that revokes a key): an engine of its own."""
    engine = make_engine(runtime.engine.url.render_as_string(hide_password=False))
    yield ApiClients(engine)
    engine.dispose()


def full_reads(clients: ApiClients, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key ids whose whole row `clients` reads from now on (what a verified key skips)."""
    read: list[str] = []
    original = clients._row

    def counted(key_id: str) -> Any:
        read.append(key_id)
        return original(key_id)

    monkeypatch.setattr(clients, "_row", counted)
    return read


@pytest.mark.both_backends
def test_a_verified_key_is_remembered_and_a_revoked_one_refused_at_once(
        clients: ApiClients, elsewhere: ApiClients, monkeypatch: pytest.MonkeyPatch) -> None:
    key, other = clients.add("feed", ["system/*.rs"]), clients.add("other", ["system/*.rs"])
    read = full_reads(clients, monkeypatch)
    for _ in range(3):
        found = clients.authenticate(key)
        assert found is not None and found.name == "feed" and found.grant.allows("Patient", "r")
    assert read == [key.split("_")[1]]  # the whole row once; later requests read only its hash and revocation
    assert elsewhere.revoke("feed")  # another process
    assert clients.authenticate(key) is None
    assert clients.authenticate(other) is not None
    assert clients.revoke("other")  # this process
    assert clients.authenticate(other) is None


@pytest.mark.both_backends
def test_a_remembered_key_id_does_not_let_another_secret_in(clients: ApiClients, runtime: Runtime) -> None:
    key = clients.add("feed", ["system/*.rs"])
    assert clients.authenticate(key) is not None
    assert clients.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert clients.authenticate(key) is not None
    with session(runtime.engine, write=True) as s:  # the row's hash changed under the process (a restored backup)
        s.execute(update(ApiClientRow).where(ApiClientRow.name == "feed").values(key_hash="0" * 64))
    assert clients.authenticate(key) is None
