"""A live `ketamine-fhir serve --production` (gunicorn) on loopback, with a helper to find its worker processes."""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.serving import START_TIMEOUT_S, migrated, run_script, script_env, served


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
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            found = [pid for pid in self.workers() if pid not in exclude]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not start {count} workers:\n{self.log.read_text()}")


def cli(env: dict[str, str], workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_script(*args, env=env, cwd=workdir, check=True)


def api_credentials(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """An API key with every scope, from `ketamine-fhir clients add` (printed alone on its last line)."""
    commands = cli(env, workdir, "--help").stdout
    if "clients" not in commands:  # before authentication existed the API was open
        return {}
    added = cli(env, workdir, "clients", "add", "hardening-tests", "--scopes",
                "system/*.cruds system/ketamine-records.cruds")
    return {"Authorization": f"Bearer {added.stdout.strip().splitlines()[-1]}"}


@contextmanager
def production(database_url: str, workdir: Path, migrate: bool = True, **settings: str) -> Iterator[Production]:
    """gunicorn on a free port (the database migrated first, with an API key in `headers`, unless not
    `migrate`), once /health answers; stopped with SIGTERM (gracefully) at the end, killed if it hangs."""
    env = script_env(database_url, **settings)
    headers = {"Authorization": f"Bearer {migrated(database_url)}"} if migrate else {}
    with served(["serve", "--production"], env, workdir, ready="/health", stop=signal.SIGTERM,
                stop_timeout=40) as running:
        yield Production(running.base, running.proc, running.log, env, headers)
