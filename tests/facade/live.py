"""A live `ketamine-fhir serve` process on loopback with a fresh migrated database, per backend."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

KFHIR = Path(sys.executable).parent / "ketamine-fhir"
START_TIMEOUT = 30.0
#: the live server's API client may do everything (its key is LiveServer.token)
FULL_SCOPES = "system/*.cruds system/ketamine-records.cruds system/ketamine-exchange.cruds system/AuditEvent.rs"


@dataclass(frozen=True)
class LiveServer:
    base: str  # the FHIR base URL, e.g. http://127.0.0.1:PORT/fhir
    backend: str
    log: Path
    token: str = ""  # an API key with FULL_SCOPES

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header, to merge into a request's headers."""
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")}
    return env | {"KFHIR_DATABASE_URL": database_url} | settings


@contextmanager
def fresh_database(backend: str, postgres_url: str | None, workdir: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a new PostgreSQL database beside the test one."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'live.db'}"
        return
    assert postgres_url is not None
    url = make_url(postgres_url)
    name = f"kfhir_live_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def add_client(env: dict[str, str], workdir: Path, name: str = "live-tests", scopes: str = FULL_SCOPES) -> str:
    """`ketamine-fhir clients add`: the key is the last line of its output."""
    done = subprocess.run([str(KFHIR), "clients", "add", name, "--scopes", scopes], env=env, cwd=workdir,
                          check=True, capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"serve did not answer {url} within {START_TIMEOUT} s:\n{log.read_text()}")


@contextmanager
def live_server(database_url: str, workdir: Path, backend: str, **settings: str) -> Iterator[LiveServer]:
    """Migrate `database_url` with `ketamine-fhir db upgrade`, then serve it on a free port."""
    env = server_env(database_url, **settings)
    subprocess.run([str(KFHIR), "db", "upgrade"], env=env, cwd=workdir, check=True,
                   capture_output=True, timeout=120)
    token = add_client(env, workdir)
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KFHIR), "serve", "--port", str(port)], env=env, cwd=workdir,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(proc, f"http://127.0.0.1:{port}/ready", log)
        yield LiveServer(f"http://127.0.0.1:{port}/fhir", backend, log, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
