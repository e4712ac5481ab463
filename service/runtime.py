"""The objects one running service shares: settings, database engine, store and intake."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from service.config import Settings
from service.domain.intake import Intake
from service.store.engine import make_engine
from service.store.records import RecordStore


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: RecordStore
    intake: Intake

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        engine = make_engine(settings.database_url)
        store = RecordStore(engine)
        return cls(settings, engine, store, Intake(store, map_check=_map_check))


def _map_check(kind: str, content: dict[str, Any]) -> None:
    from service.mapping import map_record  # the mapping specs and profiles load on first use

    map_record(kind, content)
