"""Medplum's FHIR router over its in-memory repository on 127.0.0.1: the second EHR peer, a FHIR R4 server
that none of us wrote and that is not HAPI (tests/peers/medplum/server.mjs, @medplum/fhir-router from npm).

    from peers.medplum_server import medplum_server   # the session-scoped pytest fixture (base_url …/fhir)

Installed with `npm ci` from the committed package-lock.json on first use (and whenever the lock file is newer
than node_modules); started with Node in about a second (it indexes the R4 definitions); each start is an empty
repository. Where it differs from HAPI FHIR (the client handles each; tests/exchange/test_exchange_peers.py):
version ids are UUIDs, not 1, 2, 3; a reference search parameter matches `Patient/123` but not a bare `123`;
search pages have no `next` link, only `total` (the client follows with `_offset`); no referential integrity
on write or delete; batch and transaction both offered; no request validation against profiles.

When Node or npm is missing or the install fails, tests that use it are skipped with the reason, except with
CI=true in the environment, where they fail.
"""
from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from support.serving import free_port

PEER_DIR = Path(__file__).resolve().parent / "medplum"
START_TIMEOUT_S = 90.0
INSTALL_TIMEOUT_S = 600.0


class MedplumServerError(RuntimeError):
    """The peer could not be installed or started (not: it refused a request)."""


def install() -> None:
    """`npm ci` unless node_modules is newer than the lock file (npm ci writes node_modules/.package-lock.json);
    one pytest-xdist worker at a time (`make test` installs it before pytest starts)."""
    with (Path(tempfile.gettempdir()) / "kfhir-medplum-peer-install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        _install()


def _install() -> None:
    installed = PEER_DIR / "node_modules" / ".package-lock.json"
    lock = PEER_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise MedplumServerError("npm is not on PATH (install Node.js 20.19 or later)")
    done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER_DIR,  # noqa: S603
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise MedplumServerError(f"npm ci failed in {PEER_DIR}: {done.stderr[-2000:]}")


class MedplumServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: IO[bytes], log_path: Path) -> None:
        self.process, self.port, self._log, self.log_path = process, port, log, log_path
        self.base_url = f"http://127.0.0.1:{port}/fhir"
        self.startup_seconds = 0.0

    @classmethod
    def start(cls, log_path: Path, port: int | None = None) -> MedplumServer:
        install()
        node = shutil.which("node")
        if node is None:
            raise MedplumServerError("node is not on PATH")
        port = port or free_port()
        log = log_path.open("wb")
        process = subprocess.Popen([node, "server.mjs", str(port)], cwd=PEER_DIR, stdout=log,  # noqa: S603
                                   stderr=subprocess.STDOUT)
        server = cls(process, port, log, log_path)
        _RUNNING.add(server)
        began = time.monotonic()
        try:
            server._wait_ready(began)
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - began
        return server

    def _wait_ready(self, began: float) -> None:
        while time.monotonic() - began < START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise MedplumServerError(f"node exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if self.metadata().get("resourceType") == "CapabilityStatement":
                    return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
        raise MedplumServerError(f"no answer on {self.base_url}/metadata within {START_TIMEOUT_S} s")

    def metadata(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/metadata", timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        finally:
            self._log.close()
            _RUNNING.discard(self)


_RUNNING: set[MedplumServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


@pytest.fixture(scope="session")
def medplum_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MedplumServer]:
    """One Medplum peer per test session (per pytest-xdist worker): tests share it, so use unique identifiers."""
    work = tmp_path_factory.mktemp("medplum-server")
    try:
        server = MedplumServer.start(work / "server.log")
    except (MedplumServerError, OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the Medplum peer cannot start: {exc}", pytrace=False)
        pytest.skip(f"Medplum peer unavailable (with CI=true this fails): {exc}")
    try:
        yield server
    finally:
        server.stop()
