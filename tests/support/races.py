"""A concurrent write met at a clinic record's COMMIT, made to happen."""
from __future__ import annotations

from typing import Any

import pytest

from service.app import flows
from service.app.runtime import Runtime
from service.store.engine import WRITTEN
from service.store.stored import StoredResource


def race_records_resource(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Once, as a record's transaction queues its outbox jobs (its resources' rows held for its COMMIT on
    PostgreSQL), another transaction writes its MedicationAdministration first and commits: the id it wrote goes in
    the list returned."""
    real, raced = flows.queue_taking, []

    def queue_taking(session: Any, *args: Any, **kwargs: Any) -> Any:
        if not raced:
            made = next(item for item, _ in session.info[WRITTEN]
                        if isinstance(item, StoredResource) and item.resource_type == "MedicationAdministration")
            with runtime.resources.unit(write=True) as other:
                other.write(made.resource_type, made.id, made.content, [], "PUT")
            raced.append(made.id)
        return real(session, *args, **kwargs)

    monkeypatch.setattr(flows, "queue_taking", queue_taking)
    return raced
