"""What the worker makes of failures a real server will not produce on demand (scripted with `responses`):
retried later with backoff or Retry-After, or a dead letter carrying the server's OperationOutcome."""
from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from exchange.conftest import EHR
from factories import assessment
from support.clock import FakeClock
from support.waiting import wait_until

from service.app.runtime import Runtime
from service.exchange.outbox import LEASE_S, Job, JobQuery, Outbox
from service.exchange.worker import Backoff, Worker

pytestmark = pytest.mark.both_backends  # each outcome is written under the claim's row lock

OUTCOME = {"resourceType": "OperationOutcome", "issue": [
    {"severity": "error", "code": "invalid", "diagnostics": "Observation.status: minimum required = 1",
     "expression": ["Observation.status"]}]}


def worker(runtime: Runtime, outbox: Outbox | None = None, **backoff: Any) -> Worker:
    ehr = [e for e in runtime.endpoints.all() if e.name == "ehr"]
    return Worker(outbox or runtime.outbox, ehr, name="test-worker", backoff=Backoff(**backoff),
                  rng=random.Random(7))  # noqa: S311 - jitter


def one_job(runtime: Runtime) -> Job:
    """A job of a new patient: the worker's search for the EHR's own Patient finds none (then it pushes)."""
    responses.get(f"{EHR}/Patient", json={"resourceType": "Bundle", "type": "searchset", "total": 0})
    runtime.intake.submit("assessment", assessment())
    (job,) = runtime.outbox.list(JobQuery(endpoint="ehr"))
    return job


def transaction_response(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = [{"response": {"status": "201 Created", "location": f"{e['resource']['resourceType']}/"
                             f"{e['request']['url'].split('/')[-1] if e['request']['method'] == 'PUT' else 'p1'}"
                             "/_history/1"}} for e in bundle["entry"]]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


@responses.activate
def test_a_delivered_job_records_what_the_server_wrote(exchange_runtime: Runtime) -> None:
    job = one_job(exchange_runtime)
    responses.post(EHR, json=transaction_response(job.payload), status=200)
    assert worker(exchange_runtime).drain().done == 1
    done = exchange_runtime.outbox.get(job.pk)
    assert done.state == "done" and done.finished_at is not None
    assert {(w["resourceType"], w["version"]) for w in done.written or []} == {("Patient", "1"), ("Observation", "1")}
    assert exchange_runtime.outbox.attempts(job.pk)[0]["result"] == "done"


RETRIED: list[tuple[str, dict[str, Any], str]] = [
    ("429 with Retry-After", {"status": 429, "headers": {"Retry-After": "120"}}, "429"),
    ("503", {"status": 503, "json": OUTCOME}, "503"),
    ("502 HTML error page", {"status": 502, "body": "<html><h1>Bad Gateway</h1></html>", "content_type": "text/html"},
     "text/html"),
    ("connection reset", {"body": requests.ConnectionError("Connection reset by peer")}, "connection failed"),
    ("timeout", {"body": requests.Timeout()}, "no answer within"),
    ("409 conflict", {"status": 409, "json": OUTCOME}, "409"),
]


@pytest.mark.parametrize("case, reply, says", RETRIED, ids=[c[0] for c in RETRIED])
@responses.activate
def test_temporary_failures_come_back_later(exchange_runtime: Runtime, case: str, reply: dict[str, Any],
                                            says: str) -> None:
    job = one_job(exchange_runtime)
    clock = FakeClock()
    responses.post(EHR, **reply)
    assert worker(exchange_runtime, Outbox(exchange_runtime.engine, clock=clock)).drain().retry == 1
    waiting = exchange_runtime.outbox.get(job.pk)
    assert waiting.state == "queued" and waiting.attempts == 1 and says in (waiting.last_error or "")
    delay = (waiting.next_attempt_at - clock()).total_seconds()
    if case.startswith("429"):
        assert 120 <= delay <= 122  # the server's word, plus at most a second of jitter
    else:
        assert 1 <= delay <= 3  # base 2 s, equal jitter: between 1 and 2 s
    (attempt,) = exchange_runtime.outbox.attempts(job.pk)
    assert attempt["result"] == "retry" and attempt["error"] == waiting.last_error


DEAD: list[tuple[str, dict[str, Any], str]] = [
    ("400 with OperationOutcome", {"status": 400, "json": OUTCOME}, "Observation.status"),
    ("422 with OperationOutcome", {"status": 422, "json": OUTCOME}, "minimum required"),
    ("412 multiple matches", {"status": 412, "json": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "duplicate", "diagnostics": "Multiple resources match this search"}]}},
     "needs a person"),
    ("200 with malformed JSON", {"status": 200, "body": "{not json", "content_type": "application/fhir+json"},
     "not JSON"),
]


@pytest.mark.parametrize("case, reply, says", DEAD, ids=[c[0] for c in DEAD])
@responses.activate
def test_refusals_are_dead_letters_with_the_outcome(exchange_runtime: Runtime, case: str, reply: dict[str, Any],
                                                    says: str) -> None:
    job = one_job(exchange_runtime)
    responses.post(EHR, **reply)
    assert worker(exchange_runtime).drain().dead == 1
    assert [c.request.method for c in responses.calls] == ["GET", "POST"]  # no retry: it cannot help
    dead = exchange_runtime.outbox.get(job.pk)
    assert dead.state == "dead" and says in (dead.last_error or "")
    if "json" in reply and reply["status"] != 412:
        assert dead.last_outcome == OUTCOME
        assert exchange_runtime.outbox.attempts(job.pk)[0]["http_status"] == reply["status"]


@responses.activate
def test_backoff_grows_and_gives_up_into_a_dead_letter(exchange_runtime: Runtime) -> None:
    job = one_job(exchange_runtime)
    clock = FakeClock()
    outbox = Outbox(exchange_runtime.engine, clock=clock)
    responses.post(EHR, status=503)
    delays = []
    for _ in range(4):
        before = clock()
        worker(exchange_runtime, outbox, max_attempts=4).drain()
        current = exchange_runtime.outbox.get(job.pk)
        if current.state == "dead":
            break
        delays.append((current.next_attempt_at - before).total_seconds())
        clock.advance(delays[-1])  # time passes: the job is due again
    assert [1 <= delays[0] <= 3, 2 <= delays[1] <= 5, 4 <= delays[2] <= 9] == [True] * 3
    dead = exchange_runtime.outbox.get(job.pk)
    assert dead.state == "dead" and dead.attempts == 4 and "gave up after 4 attempts" in (dead.last_error or "")
    assert [a["result"] for a in exchange_runtime.outbox.attempts(job.pk)] == ["retry"] * 3 + ["dead"]


def test_backoff_is_capped_and_jittered() -> None:
    backoff, rng = Backoff(base_s=2, cap_s=60), random.Random(1)  # noqa: S311 - jitter
    delays = [backoff.delay(30, None, rng) for _ in range(50)]
    assert all(30 <= d <= 60 for d in delays) and len(set(delays)) > 1
    assert 60 <= backoff.delay(1, 600, rng) <= 61  # Retry-After is capped too


@responses.activate
def test_a_slow_push_keeps_its_lease_by_heartbeat(exchange_runtime: Runtime) -> None:
    """A push that outlasts the lease several times over: the heartbeat keeps the job from other workers."""
    job = one_job(exchange_runtime)
    clock = FakeClock()
    outbox = Outbox(exchange_runtime.engine, clock=clock)
    taken: list[Job] = []

    def renewed() -> bool:  # a beat since the clock last moved: the lease runs a whole LEASE_S from now
        expires = outbox.get(job.pk).lease_expires_at
        return expires is not None and expires > clock() + timedelta(seconds=LEASE_S / 2)

    def slow(request: Any) -> tuple[int, dict[str, str], str]:
        for _ in range(4):  # twice the lease in all: without the heartbeat it lapses at the third step
            clock.advance(LEASE_S / 2)
            wait_until(renewed, "the worker's heartbeat to renew its lease")
            taken.extend(outbox.claim("another", ["ehr"]))
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(transaction_response(job.payload))

    responses.add_callback(responses.POST, EHR, callback=slow)
    ehr = [e for e in exchange_runtime.endpoints.all() if e.name == "ehr"]
    tally = Worker(outbox, ehr, name="slow", heartbeat_s=0.02).drain()
    assert (tally.done, tally.lost, taken) == (1, 0, [])
    assert [a["worker"] for a in exchange_runtime.outbox.attempts(job.pk)] == ["slow"]
