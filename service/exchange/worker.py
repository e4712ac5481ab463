"""The outbox worker: claims due jobs, pushes each record's Bundle to its EHR, decides what a failure means.

Network errors, 429 and 5xx come back later (exponential backoff with jitter, or the server's
Retry-After); 409 too (someone wrote in between: sending the newest version again reconciles).
400/422 and other refusals are dead letters carrying the OperationOutcome; 412 means a conditional
request matched several resources on the EHR, which needs a person. A heartbeat keeps the lease
while a push runs, so only a worker that vanished loses its jobs to another. Logs name the job and the
HTTP status only: the server's messages may quote patient data, so they stay in the job (the API shows them).
A job's Patient and Practitioner go as our store holds them when it is sent, not when it was written, merged
into the EHR's own (service/exchange/people.py): jobs delivered out of order never put an older person back at
the EHR, and what only the EHR holds of a person (an address, a phone) stays.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from service.exchange.client import FhirClient, FhirError, Written
from service.exchange.endpoints import Endpoint, EndpointError
from service.exchange.outbox import Failure, Job, Outbox
from service.exchange.people import current_people, merged_at
from service.exchange.workers import BEAT_S, Workers

log = logging.getLogger(__name__)
#: How often a running worker looks at the database's endpoints (one added, enabled or disabled since).
REFRESH_S = 5.0
#: How often a person is read and merged again when someone else wrote it between our read and our write.
MERGE_TRIES = 3


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: base·2^(n-1), capped, with equal jitter (half fixed, half random)."""

    base_s: float = 2.0
    cap_s: float = 3600.0
    max_attempts: int = 20

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:  # the server said when; a little jitter keeps workers apart
            return min(self.cap_s, retry_after) + rng.uniform(0, 1)
        exponential: float = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return exponential / 2 + rng.uniform(0, exponential / 2)


@dataclass
class Tally:
    done: int = 0
    retry: int = 0
    dead: int = 0
    lost: int = 0          # finished by us, but the job had been reclaimed meanwhile
    seconds: list[float] = field(default_factory=list)


#: Told of every finished delivery: the job, what became of it (done, retry, dead, lost) and why it failed.
Observer = Callable[[Job, str, Failure | None], None]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(self, outbox: Outbox, endpoints: list[Endpoint], name: str | None = None,
                 backoff: Backoff | None = None, clients: dict[str, FhirClient] | None = None,
                 rng: random.Random | None = None, heartbeat_s: float | None = None,
                 workers: Workers | None = None, observer: Observer | None = None,
                 refresh: Callable[[], list[Endpoint]] | None = None) -> None:
        self.outbox = outbox
        self.workers = workers
        self.observer = observer
        self._beaten = 0.0
        self._tally = Tally()
        self.endpoints = {e.name: e for e in endpoints}
        self.name = name or worker_name()
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        # Real seconds between heartbeats: a third of the lease, so two may be late before it lapses. (A test
        # whose outbox has a clock it moves beats often instead, and moves the clock between beats.)
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else outbox.lease_s / 3
        # Built up front: a missing secret stops the worker at start, not job by job.
        self.clients = clients if clients is not None else {
            e.name: FhirClient(e.base_url, e.credentials(), e.timeout_s) for e in endpoints}
        #: the endpoints as the database has them now, looked at every REFRESH_S (None: these endpoints only)
        self.refresh = refresh
        self._refreshed = time.monotonic()

    def step(self) -> tuple[Job, str] | None:
        """Claim one due job and deliver it; (the job, what became of it), or None when nothing is due."""
        self.alive()
        self._follow()
        claimed = self.outbox.claim(self.name, list(self.endpoints))
        if not claimed:
            return None
        job = claimed[0]
        with self._heartbeat(job.pk):
            return job, self.deliver(job)

    def _follow(self) -> None:
        """Deliver to the endpoints the database has now: one added or enabled since is served from the next
        look, one disabled is left (its jobs wait, queued). An endpoint whose secret this process lacks is
        left out and logged, the others go on."""
        if self.refresh is None or time.monotonic() - self._refreshed < REFRESH_S:
            return
        self._refreshed = time.monotonic()
        following: dict[str, Endpoint] = {}
        for endpoint in self.refresh():
            if self.endpoints.get(endpoint.name) != endpoint or endpoint.name not in self.clients:
                try:
                    self.clients[endpoint.name] = FhirClient(endpoint.base_url, endpoint.credentials(),
                                                             endpoint.timeout_s)
                except (EndpointError, OSError) as exc:
                    log.error("endpoint %s not delivered to by this worker: %s", endpoint.name, exc)
                    continue
            following[endpoint.name] = endpoint
        if set(following) != set(self.endpoints):
            log.info("worker %s now delivers to %s", self.name, ", ".join(following) or "no endpoint")
        self.endpoints = following

    def drain(self, on_job: Callable[[Job, str], None] | None = None) -> Tally:
        """Deliver every job due now (jobs waiting for a later retry stay queued)."""
        tally = Tally()
        try:
            while True:
                started = time.perf_counter()
                result = self.step()
                if result is None:
                    return tally
                job, state = result
                setattr(tally, state, getattr(tally, state) + 1)
                tally.seconds.append(time.perf_counter() - started)
                if on_job is not None:
                    on_job(job, state)
        finally:
            self._goodbye()

    def alive(self, force: bool = False) -> None:
        """Record this worker's heartbeat (at most every BEAT_S seconds), so the console knows it runs."""
        if self.workers is None or (not force and time.monotonic() - self._beaten < BEAT_S):
            return
        self._beaten = time.monotonic()
        t = self._tally
        self.workers.beat(self.name, list(self.endpoints), t.done, t.dead + t.retry)

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> Tally:
        """Until `stop` is set: the job in hand is finished, then the loop ends (SIGTERM sets it)."""
        tally = Tally()
        self.alive(force=True)
        try:
            while not stop.is_set():
                result = self.step()
                if result is None:
                    stop.wait(poll_s)
                    continue
                setattr(tally, result[1], getattr(tally, result[1]) + 1)
        finally:
            self._goodbye()
        return tally

    def _goodbye(self) -> None:
        """This worker stops on purpose: the console shows it stopped (with its counts), not vanished."""
        if self.workers is not None and self._beaten:
            t = self._tally
            self.workers.stopped(self.name, t.done, t.dead + t.retry)

    def deliver(self, job: Job) -> str:
        """Push `job`'s Bundle and record the outcome: done, retry, dead, or lost (reclaimed meanwhile)."""
        endpoint = self.endpoints[job.endpoint]
        failure: Failure | None = None
        try:
            written = self._push(self.clients[job.endpoint], job, endpoint.mode)
        except FhirError as exc:
            state, failure = self._failed(job, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the job: it stays, and says why
            log.error("outbox job %s: unexpected %s (the job keeps the message)", job.pk, type(exc).__name__)
            state, failure = self._failed(job, FhirError(f"unexpected {type(exc).__name__}: {exc}", retryable=True))
        else:
            status = getattr(self.clients[job.endpoint], "last_status", None)
            state = "done" if self.outbox.complete(self.name, job.pk, [_as_dict(w) for w in written], status) \
                else "lost"
        setattr(self._tally, state, getattr(self._tally, state) + 1)
        if self.observer is not None:
            self.observer(job, state, failure)
        return state

    def _push(self, client: FhirClient, job: Job, mode: str) -> list[Written]:
        """The job's Bundle, its people as held now and merged into the EHR's (service/exchange/people.py); a
        person another client changed between our read and our write is read and merged again."""
        payload, tries = current_people(self.outbox.engine, job.payload), 0
        while True:
            merged, tries = merged_at(client, payload), tries + 1
            try:
                return client.push(merged, mode)
            except FhirError as exc:
                versioned = any(e["request"].get("ifMatch") for e in merged["entry"])
                if not (exc.conflict and versioned and tries < MERGE_TRIES):
                    raise

    def _failed(self, job: Job, exc: FhirError) -> tuple[str, Failure]:
        failure = Failure(exc.message, exc.status, exc.outcome)
        if exc.status == 412:
            failure = Failure(f"needs a person: the EHR matched several resources for a conditional request "
                              f"(merge or correct them there, then retry): {exc.message}", 412, exc.outcome)
            return self._bury(job, failure), failure
        if not (exc.retryable or exc.status == 409):
            return self._bury(job, failure), failure
        if job.attempts >= self.backoff.max_attempts:
            failure = Failure(f"gave up after {job.attempts} attempts: {exc.message}", exc.status, exc.outcome)
            return self._bury(job, failure), failure
        delay = self.backoff.delay(job.attempts, exc.retry_after, self.rng)
        log.warning("outbox job %s (%s): attempt %s failed (HTTP %s), again in %.0f s", job.pk, job.endpoint,
                    job.attempts, exc.status or "-", delay)
        return ("retry" if self.outbox.retry_later(self.name, job.pk, failure, delay) else "lost"), failure

    def _bury(self, job: Job, failure: Failure) -> str:
        log.error("outbox job %s (%s): dead letter (HTTP %s)", job.pk, job.endpoint, failure.status or "-")
        return "dead" if self.outbox.bury(self.name, job.pk, failure) else "lost"

    @contextmanager
    def _heartbeat(self, pk: int) -> Iterator[None]:
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                if not self.outbox.heartbeat(self.name, pk):
                    return

        thread = threading.Thread(target=beat, name=f"outbox-heartbeat-{pk}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _as_dict(written: Written) -> dict[str, Any]:
    return {"resourceType": written.resource_type, "id": written.id, "version": written.version,
            "status": written.status, "location": written.location}
