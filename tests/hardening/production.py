"""A live `ketamine-fhir serve --production` (gunicorn) on loopback, with a helper to find its worker processes."""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from facade.live import KFHIR, free_port, server_env

START_TIMEOUT = 60.0


@dataclass
class Production:
    base: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)  # credentials, once the API asks for them

    def workers(self) -> list[int]:
        """The gunicorn master's children: its web workers."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def wait_for_workers(self, count: int, exclude: frozenset[int] = frozenset()) -> list[int]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = [pid for pid in self.workers() if pid not in exclude]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not start {count} workers:\n{self.log.read_text()}")


def cli(env: dict[str, str], workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KFHIR), *args], env=env, cwd=workdir, capture_output=True, text=True,
                          timeout=120, check=True)


def api_credentials(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """An API key with every scope, from `ketamine-fhir clients add` (printed alone on its last line)."""
    commands = cli(env, workdir, "--help").stdout
    if "clients" not in commands:  # before authentication existed the API was open
        return {}
    added = cli(env, workdir, "clients", "add", "hardening-tests", "--scopes",
                "system/*.cruds system/ketamine-records.cruds")
    return {"Authorization": f"Bearer {added.stdout.strip().splitlines()[-1]}"}


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, path: str = "/health") -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve --production exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(base + path, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or workers still booting
            time.sleep(0.05)
    raise RuntimeError(f"serve --production did not answer {path} within {START_TIMEOUT} s:\n{log.read_text()}")


@contextmanager
def production(database_url: str, workdir: Path, migrate: bool = True, **settings: str) -> Iterator[Production]:
    """gunicorn on a free port; stopped with SIGTERM (gracefully) at the end, killed if it hangs."""
    env = server_env(database_url, **settings)
    if migrate:
        cli(env, workdir, "db", "upgrade")
    port = free_port()
    log = workdir / f"production-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(KFHIR), "serve", "--production", "--port", str(port)], env=env, cwd=workdir,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Production(f"http://127.0.0.1:{port}", proc, log, env)
    try:
        wait_ready(server.base, proc, log)
        server.headers = api_credentials(env, workdir) if migrate else {}
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()  # its workers notice their parent is gone and exit
                proc.wait()
