"""Exchange fixtures: a runtime whose endpoints file names EHRs, on each database backend."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.app.runtime import Runtime
from service.config import Settings

EHR = "http://ehr.test/fhir"


def endpoints_file(folder: Path, *endpoints: dict[str, Any]) -> Path:
    path = folder / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": list(endpoints)}), encoding="utf-8")
    return path


#: `ehr` takes every kind; `registry` only assessments; `paused` is disabled.
ENDPOINTS = ({"name": "ehr", "base_url": EHR},
             {"name": "registry", "base_url": "http://registry.test/fhir", "kinds": ["assessment"]},
             {"name": "paused", "base_url": "http://paused.test/fhir", "enabled": False})


@pytest.fixture
def exchange_runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    path = endpoints_file(tmp_path, *ENDPOINTS)
    runtime = Runtime.build(Settings.load({"database_url": database_url, "endpoints_file": str(path)}, environ={}))
    yield runtime
    runtime.engine.dispose()


class Peer:
    """A FHIR server we did not write, started by the tests: its name and base URL."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name, self.base_url = name, base_url

    def __repr__(self) -> str:
        return self.name


#: the peers' session fixtures (tests/peers/): HAPI FHIR 8.8.0 JPA, Medplum's FHIR router in memory
PEERS = {"hapi": "hapi_server", "medplum": "medplum_server"}


@pytest.fixture(params=list(PEERS))
def ehr_peer(request: pytest.FixtureRequest) -> Peer:
    """Each independent FHIR server in turn."""
    return Peer(request.param, request.getfixturevalue(PEERS[request.param]).base_url)
