"""Outbox workers' heartbeats: each running worker keeps a row up to date, so the console can say how many
are alive, when each was last seen, and warn when jobs wait while none is."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from service.exchange.outbox import Clock
from service.store.engine import session as transaction
from service.store.models import OutboxWorkerRow
from service.store.records import utcnow

#: A worker beats at least this often while it runs (more often costs a write each time, for nothing).
BEAT_S = 10.0
#: A worker not seen for this long is taken for dead (three beats missed, or a stop without a goodbye).
ALIVE_S = 45.0


@dataclass(frozen=True)
class WorkerSeen:
    name: str
    endpoints: list[str]
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    delivered: int
    failed: int
    alive: bool


class Workers:
    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def beat(self, name: str, endpoints: list[str], delivered: int = 0, failed: int = 0) -> None:
        """`name` is alive now (its first beat registers it)."""
        now = self.clock()
        with transaction(self.engine, write=True) as s:
            row = s.get(OutboxWorkerRow, name)
            if row is None:
                s.add(OutboxWorkerRow(name=name, endpoints=" ".join(endpoints), started_at=now, last_seen_at=now,
                                      stopped_at=None, delivered=delivered, failed=failed))
                return
            row.last_seen_at, row.delivered, row.failed, row.stopped_at = now, delivered, failed, None

    def stopped(self, name: str, delivered: int, failed: int) -> None:
        """`name` stopped on purpose (SIGTERM, a drain finished): not alive, and not a worker that vanished."""
        now = self.clock()
        with transaction(self.engine, write=True) as s:
            row = s.get(OutboxWorkerRow, name)
            if row is not None:
                row.stopped_at, row.last_seen_at, row.delivered, row.failed = now, now, delivered, failed

    def seen(self, since: timedelta = timedelta(days=1)) -> list[WorkerSeen]:
        """Workers seen within `since`, most recently seen first."""
        now = self.clock()
        with transaction(self.engine) as s:
            rows = s.scalars(select(OutboxWorkerRow).where(OutboxWorkerRow.last_seen_at >= now - since)
                             .order_by(OutboxWorkerRow.last_seen_at.desc()).limit(50))
            return [WorkerSeen(r.name, r.endpoints.split(), r.started_at, r.last_seen_at, r.stopped_at, r.delivered,
                               r.failed, r.stopped_at is None and now - r.last_seen_at <= timedelta(seconds=ALIVE_S))
                    for r in rows]
