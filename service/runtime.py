"""The objects one running service shares: settings, database engine, stores, intake and the FHIR server."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from service.config import Settings
from service.domain.intake import Intake
from service.facade.records import RecordLinker
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

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        store = RecordStore(engine)
        intake = Intake(store, map_check=_map_check)
        resources = ResourceStore(engine)
        linker = RecordLinker(resources, intake, _mapper)
        fhir = FhirServer(resources, _validate, settings.max_bundle_entries, after_write=linker)
        return cls(settings, engine, store, intake, resources, fhir)


def _map_check(kind: str, content: dict[str, Any]) -> None:
    from service.mapping import map_record  # the mapping specs and profiles load on first use

    map_record(kind, content)


def _mapper() -> Any:
    from service.mapping import default_mapper

    return default_mapper()


def _validate(resource: dict[str, Any]) -> Any:
    from service.validation import default_validator

    return default_validator().validate(resource)
