"""The composition root: the objects one running service shares (settings, database engine, stores, intake, the
FHIR server, EHR endpoints and outbox), wired once with the flows of service/app/flows.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from service.app.flows import RecordWritten, ResourceWritten
from service.config import Settings
from service.domain.intake import Intake
from service.errors import ConfigError
from service.exchange.endpoints import EndpointError
from service.exchange.endpoints import load as load_endpoints
from service.exchange.outbox import Outbox
from service.exchange.registry import Endpoints
from service.facade.server import FhirServer
from service.store.engine import make_engine
from service.store.records import RecordStore
from service.store.resources import ResourceStore


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: RecordStore
    intake: Intake
    resources: ResourceStore
    fhir: FhirServer
    endpoints: Endpoints
    outbox: Outbox

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """Wire the service: every collaborator is given at construction, nothing is set afterwards."""
        engine = make_engine(settings.database_url, group_commit=settings.group_commit)
        store = RecordStore(engine)
        resources = ResourceStore(engine)
        path = Path(settings.endpoints_file) if settings.endpoints_file else None
        try:
            declared = load_endpoints(path)
        except EndpointError as exc:
            raise ConfigError(f"KFHIR_ENDPOINTS_FILE: {exc}") from None
        # The file is an import: every process enqueues for the endpoints in the database, whatever it read.
        endpoints = Endpoints(engine, declared, f"file {path.name}" if path else "")
        endpoints.import_declared()  # a database not migrated yet takes them at the first read after
        # A resource written through the facade becomes a record through an intake that neither maps nor exports;
        # a record written through the domain API is mapped, and its resources written through the facade.
        read_back = ResourceWritten(Intake(store), _mapper)
        fhir = FhirServer(resources, _validate, settings.max_bundle_entries, after_write=read_back)
        written = RecordWritten(fhir, endpoints, _mapper)
        # drafted before its unit where writers take turns (SQLite); PostgreSQL's run at once: it would only cost more
        intake = Intake(store, map_check=_map_check, export=written,
                        draft=written.draft if resources.one_writer else None)
        return cls(settings, engine, store, intake, resources, fhir, endpoints, Outbox(engine))


def _map_check(kind: str, content: dict[str, Any], findings: list[dict[str, Any]]) -> Any:
    from service.mapping import map_record  # the mapping specs and profiles load on first use

    return map_record(kind, content, findings=findings)


def _mapper() -> Any:
    from service.mapping import default_mapper

    return default_mapper()


def _validate(resource: dict[str, Any], profile: str | None = None) -> Any:
    from service.validation import default_validator

    return default_validator().validate(resource, profile)
