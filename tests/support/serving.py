"""Processes the tests start: the `ketamine-fhir` console script, and servers of ours on loopback ports.

    with live_server(database_url, tmp_path) as live:       # migrated, an API key, `serve` answering
        requests.get(f"{live.base}/Patient", headers=live.headers)

Each process gets this environment without KFHIR_* settings (the tests' own may leak in otherwise), plus the
database and the settings the test names. (Most command tests run the CLI in-process: tests/cli/support.py.)"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from service.exchange.auth import Bearer
from service.security.keys import ApiClients
from service.store.engine import make_engine
from service.store.migrate import upgrade

#: the console script of the interpreter running the tests (the venv's)
KFHIR = Path(sys.executable).parent / "ketamine-fhir"
START_TIMEOUT_S = 60.0
#: what the API client of a live server may do: everything (its key is LiveServer.token)
FULL_SCOPES = "system/*.cruds system/ketamine-records.cruds system/ketamine-exchange.cruds system/AuditEvent.rs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def script_env(database_url: str, **settings: str) -> dict[str, str]:
    """This environment without KFHIR_* settings (the test PostgreSQL URL aside), on `database_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_") or k == "KFHIR_TEST_POSTGRES_URL"}
    return env | {"KFHIR_DATABASE_URL": database_url} | settings


def run_script(*args: str, env: dict[str, str], cwd: Path | None = None, stdin: str = "", timeout: float = 120,
          check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the console script; a new session, so no terminal: prompts read standard input."""
    return subprocess.run([str(KFHIR), *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=check, start_new_session=True)


def wait_until_answers(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Until GET `url` answers 200; RuntimeError with the process's log if it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, proc.args))} exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or workers still booting
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s:\n{log.read_text()}")


@dataclass(frozen=True)
class Served:
    """A server process of ours: `base` is http://127.0.0.1:PORT; its output goes to `log`."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]


@contextmanager
def served(args: Sequence[str], env: dict[str, str], workdir: Path, ready: str = "/ready",
           stop: signal.Signals = signal.SIGTERM, stop_timeout: float = 10.0) -> Iterator[Served]:
    """`ketamine-fhir ARGS --port PORT` on a free port, once GET `ready` answers 200; at the end `stop` is sent
    and, if it has not exited within `stop_timeout` seconds, it is killed."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KFHIR), *args, "--port", str(port)], env=env, cwd=workdir, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(base + ready, proc, log)
        yield Served(base, proc, log, env)
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()  # gunicorn's workers notice their parent is gone and exit
                proc.wait()


@dataclass(frozen=True)
class LiveServer:
    base: str  # the FHIR base URL, e.g. http://127.0.0.1:PORT/fhir
    log: Path
    token: str  # an API key with FULL_SCOPES
    backend: str = "sqlite"

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header, to merge into a request's headers."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def bearer(self) -> Bearer:
        """The same credentials for our own FHIR client."""
        return Bearer(self.token)


def migrated(database_url: str) -> str:
    """Migrate `database_url` and add an API client with FULL_SCOPES; its key. In this process: a process per
    step would cost seconds each (tests/test_cli.py runs `db upgrade` and `clients add` as processes)."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        return ApiClients(engine).add("live-tests", FULL_SCOPES.split())
    finally:
        engine.dispose()


@contextmanager
def live_server(database_url: str, workdir: Path, **settings: str) -> Iterator[LiveServer]:
    """Migrate `database_url`, add an API client, and `serve` it."""
    env = script_env(database_url, **settings)
    token = migrated(database_url)
    with served(["serve"], env, workdir) as server:
        yield LiveServer(f"{server.base}/fhir", server.log, token, database_url.split(":", 1)[0].split("+")[0])
