"""A clock the tests move by hand, for the outbox's leases and retry times (Outbox(engine, clock=FakeClock()))."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.store.records import utcnow


@dataclass
class FakeClock:
    """Naive UTC like utcnow, standing still until `advance`. It starts at the real time, so jobs enqueued
    before it was made (stamped by the real clock) are due; make it after storing the records a test needs."""

    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now
