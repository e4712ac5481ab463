"""HAPI FHIR 8.8.0 JPA server (H2 in memory) on 127.0.0.1: the real EHR peer our exchange tests push to and
pull from (tests/peers/hapi/server, our own small Spring Boot application).

    from peers.hapi_server import hapi_server        # the session-scoped pytest fixture

    def test_push(hapi_server):
        requests.post(hapi_server.base_url, json=bundle)   # base_url = "http://127.0.0.1:PORT/fhir"

or, outside pytest:

    with HapiServer.start(ig_package=build_ig_package(tmp_dir)) as server:
        ...

What the peer does (HAPI defaults once the JPA system provider and the database paging provider are
registered): transactions and batches, conditional create (If-None-Exist), conditional update/delete,
versioned update with If-Match (a mismatch is HTTP 409, not 412), search with paging (`next` links),
`_history` at instance/type/system level, `$validate`. Every request body is validated (request validation,
errors refuse the request with 422 and an OperationOutcome) against R4 and the profiles it declares, which our IG
package supplies (`ketamine-fhir profiles package`, installed at start-up). Unknown code systems (SNOMED CT,
LOINC, RxNorm, ICD-10-CM: there is no terminology server offline) are downgraded to warnings with the rules of
the validator harness (tests/peers/hapi/validator). Like a real EHR it enforces referential integrity: a
reference to a resource it does not hold is refused (400). Client-assigned ids may be anything (UUIDs,
numbers); server-assigned ids are UUIDs; searches are never answered from a cached earlier search.

The first start builds the Java project with Maven (the first build ever downloads HAPI and Spring Boot from
Maven Central, then Maven works from ~/.m2); later starts reuse target/ until pom.xml or src/ change. Each
start is a new JVM with a new, empty in-memory database. Start-up takes 20-60 s on a 2-core machine.

The fixture: when the peer cannot be built or started, tests that use it are skipped with the reason, except
with CI=true in the environment, where they fail (a CI run never silently skips the EHR peer).
Environment: KFHIR_HAPI_SERVER_JAVA_OPTS adds JVM options (e.g. -Xmx1g); KFHIR_HAPI_SERVER_TIMEOUT overrides
the start-up timeout in seconds (default 240). Maven builds it through tests/support/maven.py.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from support.maven import MavenProject
from support.serving import free_port

SERVER_DIR = Path(__file__).resolve().parent / "hapi" / "server"
MAIN_CLASS = "org.ketaminefhir.peer.server.HapiPeerApplication"
REPO_ROOT = SERVER_DIR.parents[3]

# 768 MB of heap keeps the JVM near 1 GB resident; SerialGC: one GC thread on a 2-core machine;
# C1 only (TieredStopAtLevel=1): faster start-up, and test traffic is too light to need C2.
DEFAULT_JAVA_OPTS = ("-Xmx768m", "-Xss512k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                     "-XX:ReservedCodeCacheSize=96m", "-XX:MaxMetaspaceSize=256m")
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0


class HapiServerError(RuntimeError):
    """The peer could not be built or started (not: it refused a request)."""


PROJECT = MavenProject(SERVER_DIR, "the HAPI FHIR peer", HapiServerError)


# ---------------------------------------------------------------------------------------------- building

def build(force: bool = False) -> tuple[Path, str]:
    """Builds the server unless target/ is newer than pom.xml and src/; returns (classes dir, dependency
    classpath)."""
    return PROJECT.build(force)


def build_ig_package(dist: Path) -> Path:
    """Writes our IG as a FHIR NPM package into `dist` (`ketamine-fhir profiles package --dist DIST`) and
    returns the .tgz."""
    dist.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).parent / "ketamine-fhir"
    command = [str(cli)] if cli.is_file() else [sys.executable, "-c", "from service.cli import main; main()"]
    command += ["profiles", "package", "--dist", str(dist)]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    packages = sorted(dist.glob("*.tgz"))
    if proc.returncode != 0 or not packages:
        raise HapiServerError(f"{' '.join(command)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return packages[-1]


# ---------------------------------------------------------------------------------------------- running

class HapiServer:
    """One running peer JVM. `base_url` is the FHIR base (http://127.0.0.1:PORT/fhir)."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path, log: IO[bytes],
                 ig_package: Path | None) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/fhir"
        self.log_path = log_path
        self.ig_package = ig_package
        self.startup_seconds: float | None = None
        self._log = log

    @classmethod
    def start(cls, ig_package: Path | None = None, *, port: int | None = None,
              extra_java_opts: Sequence[str] = (), timeout: float | None = None,
              log_path: Path | None = None) -> HapiServer:
        """Builds if needed, starts the JVM and waits until GET {base}/metadata answers 200.
        Raises HapiServerError (with the end of the server log) when it exits or does not answer in time;
        the JVM is stopped then."""
        if timeout is None:
            timeout = float(os.environ.get("KFHIR_HAPI_SERVER_TIMEOUT", START_TIMEOUT_S))
        port = port or free_port()
        if log_path is None:
            log_path = Path(tempfile.mkdtemp(prefix="kfhir-hapi-server-")) / "server.log"
        opts = [*DEFAULT_JAVA_OPTS, *os.environ.get("KFHIR_HAPI_SERVER_JAVA_OPTS", "").split(), *extra_java_opts]
        command = [*PROJECT.java_command(MAIN_CLASS, opts), f"--server.port={port}", "--server.address=127.0.0.1"]
        if ig_package is not None:
            command.append(f"--kfhir.ig-package={Path(ig_package).resolve()}")
        log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
        began = time.monotonic()
        process = subprocess.Popen(command, cwd=SERVER_DIR, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(process, port, log_path, log, ig_package)
        _RUNNING.add(server)
        try:
            server._wait_ready(began, timeout)
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - began
        return server

    def _wait_ready(self, began: float, timeout: float) -> None:
        url = f"{self.base_url}/metadata"
        while True:
            code = self.process.poll()
            if code is not None:
                raise HapiServerError(f"the HAPI FHIR peer exited with {code} while starting; "
                                      f"log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - began > timeout:
                raise HapiServerError(f"the HAPI FHIR peer did not answer GET {url} within {timeout:.0f} s; "
                                      f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        kept = [line for line in text.splitlines() if not line.lstrip().startswith("at ")]  # no stack frames
        return "\n".join(kept[-lines:])

    def memory_kb(self) -> dict[str, int]:
        """The JVM's resident set now (VmRSS) and at its peak (VmHWM), in kB, from /proc (Linux)."""
        out: dict[str, int] = {}
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return out
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def metadata(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/metadata", timeout=30) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (Spring shuts down cleanly), then SIGKILL after 30 s. Idempotent."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._log.close()
            _RUNNING.discard(self)

    def __enter__(self) -> HapiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_RUNNING: set[HapiServer] = set()


@atexit.register
def _stop_all() -> None:  # a test run that dies must not leave JVMs behind
    for server in list(_RUNNING):
        server.stop()


# ---------------------------------------------------------------------------------------------- fixture

def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and the HAPI FHIR peer cannot start: {message}", pytrace=False)
    pytest.skip(f"HAPI FHIR peer unavailable (with CI=true this fails): {message}")


def _peer(work: Path) -> Iterator[HapiServer]:
    """A peer with our IG installed, on a free loopback port, working in `work`; stopped at the end."""
    try:
        package = build_ig_package(work / "ig")
        server = HapiServer.start(ig_package=package, log_path=work / "server.log")
    except (HapiServerError, OSError, subprocess.SubprocessError) as exc:
        _unavailable(str(exc))
        raise  # not reached: _unavailable fails or skips
    try:
        yield server
    finally:
        # Start-up time and peak resident memory of the JVM, for whoever sizes CI machines.
        metrics = {"startup_seconds": server.startup_seconds, **server.memory_kb()}
        (work / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        server.stop()


@pytest.fixture(scope="session")
def hapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HapiServer]:
    """One HAPI FHIR JPA server for the test session (registered once, in tests/conftest.py). Tests share its
    database: use unique identifiers per test."""
    yield from _peer(tmp_path_factory.mktemp("hapi-server"))
