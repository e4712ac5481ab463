"""The exchange dashboard: per endpoint what was delivered, what is retrying, what is dead and how old the oldest
waiting job is; which workers are alive; and alerts a person must act on (dead letters, stalled queues, an
endpoint failing, jobs waiting with no worker). Job states are named here for people, once."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, case, func, select
from sqlalchemy.orm import Session

from service.exchange.endpoints import Endpoint
from service.exchange.outbox import Clock, Job
from service.exchange.workers import Workers, WorkerSeen
from service.store.engine import session
from service.store.models import OutboxAttemptRow, OutboxJobRow
from service.store.records import utcnow

#: A job due this long without a worker taking it means the queue is stalled.
STALLED_AFTER = timedelta(minutes=5)

#: What each state means to a person (the outbox's own names are for code).
STATE_NAMES = {"waiting": "waiting to be sent", "retrying": "retrying after an error", "in_flight": "being sent",
               "delivered": "delivered", "superseded": "replaced by a newer version (not sent)",
               "dead": "dead — needs a person"}
#: The outbox filter's states, as a person reads them.
FILTER_NAMES = {"queued": "waiting or retrying", "in_flight": "being sent", "done": "delivered or replaced",
                "dead": "dead — needs a person"}


def state_of(job: Job) -> str:
    """The job's state as the dashboard and the job pages name it (a key of STATE_NAMES)."""
    if job.state == "queued":
        return "retrying" if job.attempts else "waiting"
    if job.state == "done":
        return "superseded" if job.superseded_by else "delivered"
    return job.state


@dataclass(frozen=True)
class LastError:
    at: datetime
    job: int
    http_status: int | None
    message: str


@dataclass
class EndpointHealth:
    endpoint: Endpoint
    delivered: int = 0
    waiting: int = 0
    retrying: int = 0
    in_flight: int = 0
    dead: int = 0
    oldest_waiting: datetime | None = None
    overdue_since: datetime | None = None   # the earliest next attempt still not taken
    last_success: datetime | None = None
    last_error: LastError | None = None

    @property
    def open(self) -> int:
        return self.waiting + self.retrying + self.in_flight

    @property
    def failing(self) -> bool:
        """The latest thing that happened here was an error (retrying jobs, no success since)."""
        return self.last_error is not None and (self.last_success is None or self.last_error.at > self.last_success)

    @property
    def status(self) -> str:
        if self.dead:
            return "needs a person"
        if self.failing and self.retrying:
            return "failing — retrying after errors"
        if self.open:
            return "sending"
        return "healthy" if self.delivered else "idle"


@dataclass(frozen=True)
class Alert:
    level: str          # error | warning
    text: str
    endpoint: str | None = None
    link_state: str | None = None   # the outbox filter that shows the jobs concerned


@dataclass
class Dashboard:
    now: datetime
    endpoints: list[EndpointHealth]
    workers: list[WorkerSeen]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def alive(self) -> list[WorkerSeen]:
        return [w for w in self.workers if w.alive]


def dashboard(engine: Engine, endpoints: list[Endpoint], clock: Clock = utcnow) -> Dashboard:
    now = clock()
    health = {e.name: EndpointHealth(e) for e in endpoints}
    with session(engine) as s:
        _counts(s, health, now)
        _last_errors(s, health)
    board = Dashboard(now, list(health.values()), Workers(engine, clock).seen())
    board.alerts = alerts(board)
    return board


def _counts(s: Session, health: dict[str, EndpointHealth], now: datetime) -> None:
    job = OutboxJobRow
    queued, done = job.state == "queued", and_(job.state == "done", job.superseded_by.is_(None))
    stmt = select(
        job.endpoint,
        func.sum(case((done, 1), else_=0)), func.sum(case((and_(queued, job.attempts == 0), 1), else_=0)),
        func.sum(case((and_(queued, job.attempts > 0), 1), else_=0)),
        func.sum(case((job.state == "in_flight", 1), else_=0)), func.sum(case((job.state == "dead", 1), else_=0)),
        func.min(case((job.state.in_(("queued", "in_flight")), job.created_at), else_=None)),
        func.min(case((and_(queued, job.next_attempt_at <= now), job.next_attempt_at), else_=None)),
        func.max(case((done, job.finished_at), else_=None)),
    ).group_by(job.endpoint)
    for name, delivered, waiting, retrying, in_flight, dead, oldest, overdue, success in s.execute(stmt):
        found = health.get(name)
        if found is None:  # an endpoint no longer configured: its jobs stay in the outbox page
            continue
        found.delivered, found.waiting, found.retrying = int(delivered or 0), int(waiting or 0), int(retrying or 0)
        found.in_flight, found.dead = int(in_flight or 0), int(dead or 0)
        found.oldest_waiting, found.overdue_since, found.last_success = oldest, overdue, success


def _last_errors(s: Session, health: dict[str, EndpointHealth]) -> None:
    attempt, job = OutboxAttemptRow, OutboxJobRow
    for name, found in health.items():
        row = s.execute(
            select(attempt.finished_at, attempt.job_pk, attempt.http_status, attempt.error)
            .join(job, job.pk == attempt.job_pk)
            .where(job.endpoint == name, attempt.error.is_not(None), attempt.finished_at.is_not(None))
            .order_by(attempt.pk.desc()).limit(1)).first()
        if row is not None and row[0] is not None:
            found.last_error = LastError(row[0], row[1], row[2], row[3] or "")


def alerts(board: Dashboard) -> list[Alert]:
    """What needs a person, worst first."""
    found: list[Alert] = []
    waiting = sum(h.waiting + h.retrying for h in board.endpoints)
    if waiting and not board.alive:
        seen = max((w.last_seen_at for w in board.workers), default=None)
        when = f"the last one was seen {age(board.now, seen)} ago" if seen else "none ran in the last day"
        found.append(Alert("error", f"{waiting} job{_s(waiting)} waiting and no outbox worker is running ({when}): "
                                    "start one with `ketamine-fhir worker`."))
    for h in board.endpoints:
        name = h.endpoint.name
        if h.dead:
            need = "it needs" if h.dead == 1 else "they need"
            found.append(Alert("error", f"{name}: {h.dead} dead job{_s(h.dead)} — {need} a person (fix the cause, "
                                        "then retry).", name, "dead"))
        if h.overdue_since is not None and board.now - h.overdue_since > STALLED_AFTER:
            late = age(board.now, h.overdue_since)
            found.append(Alert("warning", f"{name}: the queue is stalled — a job has been due for {late} and no "
                                          "worker has taken it.", name, "queued"))
        if h.failing and h.retrying and h.last_error is not None:
            found.append(Alert("warning", f"{name}: failing — {h.retrying} job{_s(h.retrying)} retrying after errors; "
                                          f"last error {age(board.now, h.last_error.at)} ago.", name, "queued"))
    return found


def age(now: datetime, then: datetime | None) -> str:
    """`3 min`, `2 h 5 min`, `4 days`: how long ago, for people."""
    if then is None:
        return "—"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    days = seconds // 86400
    return f"{days} day{_s(days)}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"
