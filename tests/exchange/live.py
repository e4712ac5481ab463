"""A live `ketamine-fhir serve` on loopback with its own SQLite database: the EHR stand-in for client tests
(the HAPI FHIR peer comes with the exchange issue's integration tests)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from facade.live import add_client

from service.exchange.auth import Bearer

KFHIR = Path(sys.executable).parent / "ketamine-fhir"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LiveEhr:
    base: str
    token: str  # an API key with every scope

    @property
    def auth(self) -> Bearer:
        return Bearer(self.token)


@contextmanager
def live_server(folder: Path) -> Iterator[LiveEhr]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")} | {
        "KFHIR_DATABASE_URL": f"sqlite:///{folder / 'ehr.db'}", "KFHIR_LOG_LEVEL": "WARNING"}
    subprocess.run([str(KFHIR), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    token = add_client(env, folder)
    port = free_port()
    process = subprocess.Popen([str(KFHIR), "serve", "--port", str(port)], env=env, cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/metadata", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        yield LiveEhr(base, token)
    finally:
        process.terminate()
        process.wait(timeout=30)
