"""The objects one running service shares: settings, database engine, stores, intake and the FHIR server."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.config import Settings
from service.domain.intake import Intake
from service.errors import ConfigError, Contention, Issue, RequestError, Unprocessable
from service.exchange.endpoints import Endpoint, EndpointError
from service.exchange.endpoints import load as load_endpoints
from service.exchange.outbox import Outbox, enqueue
from service.facade.records import RecordLinker
from service.facade.server import FhirServer
from service.store.engine import make_engine
from service.store.records import RecordStore, StoredRecord
from service.store.resources import ResourceStore, Unit


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: RecordStore
    intake: Intake
    resources: ResourceStore
    fhir: FhirServer
    endpoints: list[Endpoint]
    outbox: Outbox

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        store = RecordStore(engine)
        resources = ResourceStore(engine)
        intake = Intake(store, map_check=_map_check)
        linker = RecordLinker(intake, _mapper)
        fhir = FhirServer(resources, _validate, settings.max_bundle_entries, after_write=linker)

        try:
            endpoints = load_endpoints(Path(settings.endpoints_file) if settings.endpoints_file else None)
        except EndpointError as exc:
            raise ConfigError(f"KFHIR_ENDPOINTS_FILE: {exc}") from None

        def export(session: Session, mapped: Any, record: StoredRecord) -> None:
            try:
                fhir.export_record(Unit(session), mapped.bundle, record.id)
                enqueue(session, record, mapped.bundle, endpoints)  # the EHRs hear of it if and only if it is stored
            except IntegrityError:  # a concurrent record created the same new Patient first
                raise Contention("Another record created the same patient or practitioner at the same moment; "
                                 "send this record again.") from None
            except RequestError as exc:  # e.g. the EHR holds two Patients with this MRN
                raise Unprocessable(f"The record's FHIR resources cannot be stored: {exc.detail}",
                                    exc.issues or [Issue("$", exc.detail)]) from None

        intake.export = export
        return cls(settings, engine, store, intake, resources, fhir, endpoints, Outbox(engine))


def _map_check(kind: str, content: dict[str, Any]) -> Any:
    from service.mapping import map_record  # the mapping specs and profiles load on first use

    return map_record(kind, content)


def _mapper() -> Any:
    from service.mapping import default_mapper

    return default_mapper()


def _validate(resource: dict[str, Any]) -> Any:
    from service.validation import default_validator

    return default_validator().validate(resource)
