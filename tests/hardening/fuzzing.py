"""What every fuzz test checks after each request: no 5xx, and a rejected request changed nothing."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient
from hardening.db import snapshot
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import Engine

from service.config import Settings

#: the backends tests/conftest.py's `database_url` runs every test on
BACKENDS = ("sqlite", "postgresql")
#: generated requests per fuzz suite (schemathesis, facade), shared among its tests: enough in `make test` to
#: reach every operation on both backends each run; `make fuzz` (and CI after `make test`) runs 5,000
REQUESTS = int(os.environ.get("KFHIR_FUZZ_REQUESTS") or "600")
#: CI replays the same examples every run (a failure is reproducible); `make fuzz` explores anew each run
FUZZ = settings(max_examples=REQUESTS, deadline=None, database=None,
                derandomize=os.environ.get("KFHIR_FUZZ_RANDOM") != "1",
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def share(tests: int) -> settings:
    """FUZZ with this test's share of the suite's requests (the suite runs `tests` tests: backends × modes)."""
    return settings(FUZZ, max_examples=-(-REQUESTS // tests))


def quiet_settings(database_url: str) -> Settings:
    """Warnings and errors only: an access line per generated request is noise here (and costs time)."""
    return Settings.load({"database_url": database_url, "log_level": "WARNING"}, environ={})


@dataclass
class Referee:
    """Sends requests through the (authenticated) test client and keeps score."""

    client: FlaskClient
    engine: Engine
    statuses: Counter[int] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    changed_by_rejection: list[str] = field(default_factory=list)
    state: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = snapshot(self.engine)

    def send(self, operation: str, **request: Any) -> Any:
        response = self.client.open(**request)
        status = response.status_code
        self.statuses[status] += 1
        self.operations[operation] += 1
        what = f"{request.get('method')} {request.get('path')} → {status}"
        if status >= 500:
            self.server_errors.append(f"{what}: {request!r:.600} {response.get_data(as_text=True)[:300]}")
        if status >= 400 or request.get("method") in ("GET", "HEAD"):
            now = snapshot(self.engine)
            if now != self.state:
                changed = sorted(t for t in now if now[t] != self.state.get(t))
                self.changed_by_rejection.append(f"{what} changed {changed}: {request!r:.600}")
                self.state = now
        else:
            self.state = snapshot(self.engine)
        return response

    def verdict(self, label: str) -> str:
        total = sum(self.statuses.values())
        fives = sum(n for s, n in self.statuses.items() if s >= 500)
        return (f"{label}: {total} requests, {len(self.operations)} operations, {fives} responses >= 500, "
                f"{len(self.changed_by_rejection)} rejected requests that changed the database; "
                f"statuses {dict(sorted(self.statuses.items()))}")
