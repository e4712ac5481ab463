"""A write unit's rows sent to PostgreSQL in one statement each, where SQLite's path sends several: on PostgreSQL
every statement is a round trip (the client waits for its answer), and a facade create made 13 of them.

* a Batch (store/batch.py) of resource writes: its created rows, changed rows, dropped index rows, versions and
  index rows were 3-5 statements (a created row's key came back before its version and index rows could be sent);
  here one, whose data-modifying CTEs pass each created row's key on to its version and index rows inside the
  server. Each list goes as one array a column (unnest), so the statement's text is the same for every size (parsed
  once a connection: psycopg prepares it) and the rows go in the order given (WITH ORDINALITY), keys as before.
* a write's audit event, sent with its COMMIT (driver.at_commit): its INSERT alone was a round trip; and a write
  unit's last Batch (Unit.batch), sent with the next statement or the COMMIT, whichever comes first: a facade
  create and a clinic record made 6 round trips, now 5 (store/pipeline.py).
* a record's outbox jobs: the endpoints that take it read, its jobs queued and older ones superseded, three round
  trips, in one statement (QUEUE_SQL), which a record's write sends with its COMMIT.
* what a clinic record's export reads first: its people's conditional searches (keep_current's) and the rows its
  updates replace (export_record's prefetch), a round trip each, in one statement (LOOK_UP_SQL).
* a new clinic record and its first version: two statements, one here; a record already stored under its identity
  inserts nothing (ON CONFLICT DO NOTHING), which the caller tells from the key not coming back, instead of the
  unique violation that needed a savepoint (two round trips more) inside a facade write's transaction.

The values are bound as the Core statements bound them (JSON as its json.dumps text cast to json, which PostgreSQL
stores as that text; times as psycopg's timestamps), so the stored rows are the same
(tests/store/test_postgres_writes.py).

The arrays of BATCH_SQL, ADD_SQL and LOOK_UP_SQL go in binary format (%b): psycopg builds a text array's literal in
Python, quoting and escaping each element (every quote of a resource's JSON), which cost this process 3.4 ms of CPU
for a clinic record's batch and 0.64 ms for a create's; binary, 0.29 and 0.11 ms (/work/notes/pg-tools/dumpcost.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from service.store import driver
from service.store.models import (
    AuditEventRow,
    EndpointRow,
    OutboxJobRow,
    RecordRow,
    RecordVersionRow,
    ResourceRow,
    ResourceVersionRow,
    SearchIndexRow,
)

R, V, X = ResourceRow.__tablename__, ResourceVersionRow.__tablename__, SearchIndexRow.__tablename__

#: a Batch in one statement (names are the tables' constants, values are bound): created rows (made), changed rows
#: (changed), the index rows of changed resources dropped (dropped: its snapshot is the statement's, so it never sees
#: the rows `indexed` adds), then every version and index row, a created resource's key taken from `made`
_MADE = f"""WITH made AS (
  INSERT INTO {R} (resource_type, id, version, deleted, last_updated, content, warnings, record_id)
  SELECT resource_type, id, version, deleted, last_updated, content::json, warnings::json, record_id
  FROM unnest(%b::varchar[], %b::varchar[], %b::integer[], %b::boolean[], %b::timestamp[], %b::text[], %b::text[],
              %b::varchar[]) WITH ORDINALITY
       AS c(resource_type, id, version, deleted, last_updated, content, warnings, record_id, n)
  ORDER BY n RETURNING pk, resource_type, id, content
), """  # noqa: S608 - the tables' names, no value
_CHANGED = f"""changed AS (
  UPDATE {R} AS r SET version = u.version, deleted = u.deleted, last_updated = u.last_updated,
                      content = u.content::json, warnings = u.warnings::json, record_id = u.record_id
  FROM unnest(%b::integer[], %b::integer[], %b::boolean[], %b::timestamp[], %b::text[], %b::text[], %b::varchar[])
       AS u(pk, version, deleted, last_updated, content, warnings, record_id)
  WHERE r.pk = u.pk RETURNING r.pk, r.content
), dropped AS (
  DELETE FROM {X} WHERE resource_pk = ANY(%b::integer[])
), """  # noqa: S608 - the tables' names, no value
_ADDED = f"""versions AS (
  INSERT INTO {V} (resource_pk, resource_type, id, version, method, deleted, last_updated, content)
  SELECT coalesce(made.pk, v.resource_pk), v.resource_type, v.id, v.version, v.method, v.deleted, v.last_updated,
         {{content}}
  FROM unnest(%b::integer[], %b::varchar[], %b::varchar[], %b::integer[], %b::varchar[], %b::boolean[],
              %b::timestamp[]) WITH ORDINALITY
       AS v(resource_pk, resource_type, id, version, method, deleted, last_updated, n)
  LEFT JOIN made ON made.resource_type = v.resource_type AND made.id = v.id{{joined}}
  ORDER BY v.n
), indexed AS (
  INSERT INTO {X} (resource_pk, resource_type, param, system, value, low, high, path)
  SELECT coalesce(made.pk, x.resource_pk), x.resource_type, x.param, x.system, x.value, x.low, x.high, x.path
  FROM unnest(%b::integer[], %b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[],
              %b::timestamp[], %b::timestamp[], %b::varchar[]) WITH ORDINALITY
       AS x(resource_pk, id, resource_type, param, system, value, low, high, path, n)
  LEFT JOIN made ON made.resource_type = x.resource_type AND made.id = x.id
  ORDER BY x.n
)
SELECT pk, resource_type, id FROM made"""  # noqa: S608 - the tables' names, no value
#: a version's content is its row's, as that row's INSERT or UPDATE returns it (Batch holds a resource once, its row and
#: its version of one text): sent once and checked as JSON once, where each was twice (json_lex was 8.7 % of a clinic
#: record's backend instructions). A deletion's row and version hold NULL alike.
BATCH_SQL = _MADE + _CHANGED + _ADDED.format(content="coalesce(made.content, changed.content)",
                                             joined="\n  LEFT JOIN changed ON changed.pk = v.resource_pk")
#: BATCH_SQL for a Batch that changes no stored row (a create, a clinic record's new resources, a Bundle of POSTs):
#: it reads no table, so it runs under a generic plan (pipeline.GENERIC) made once a connection. BATCH_SQL's UPDATE
#: and DELETE read the resource and index tables, and a generic plan made while they were small (a new database's
#: first requests) read them whole until the next ANALYZE: the search index's every row on each create (served, 0.62
#: sequential scans a create of ~5,000 rows each, pg_stat_user_tables). It is planned for its values each time.
ADD_SQL = _MADE + _ADDED.format(content="made.content", joined="")
#: the columns of a resource row as Batch holds them (besides its key), in BATCH_SQL's order
ROW = ("version", "deleted", "last_updated", "content", "warnings", "record_id")
#: a version's columns as BATCH_SQL takes them (its content is its row's)
VERSION = ("resource_pk", "resource_type", "id", "version", "method", "deleted", "last_updated")


Row = dict[str, Any]
#: what takes the keys of a batch's created rows by (type, id) once they are back
Made = Callable[[dict[tuple[str, str], int]], None]


def send_batch(connection: Connection, created: list[tuple[Row, Row]], changed: list[Row], dropped: list[Row],
               versions: list[Row], index: list[tuple[Any, ...]], then: Made | None = None,
               failed: Callable[[BaseException], BaseException] = lambda exc: exc) -> dict[tuple[str, str], int] | None:
    """Batch.send on PostgreSQL, of its lists (`index`: the index rows with their resource's key and id first): every
    row in one statement; the keys of the created rows by (type, id), also set in their versions. With `then`, sent
    with the next statement or the COMMIT of the connection's write transaction where it can (driver.at_commit, one
    round trip fewer): None, the keys given to `then` once back, and a failure raises `failed(the error as
    SQLAlchemy raises it)` there."""
    new = [row for row, _ in created]
    params: list[Any] = [[row["resource_type"] for row in new], [row["id"] for row in new]]
    params += [[_json(name, row[name]) for row in new] for name in ROW]
    if changed or dropped:
        params += [[row["the_pk"] for row in changed]]
        params += [[_json(name, row[name]) for row in changed] for name in ROW]
        params += [[row["the_pk"] for row in dropped]]
    params += [[row[name] for row in versions] for name in VERSION]
    params += [list(column) for column in zip(*index, strict=True)] if index else [[] for _ in range(9)]
    sql, generic = (BATCH_SQL, False) if changed or dropped else (ADD_SQL, True)
    if then is not None and driver.at_commit(connection, sql, params,
                                             lambda exc: failed(driver.wrapped(connection, sql, params, exc)),
                                             generic, lambda rows: then(_made(rows, created))):
        return None
    return _made(driver.rows(connection, sql, params, generic=generic), created)


def _made(rows: list[tuple[Any, ...]], created: list[tuple[Row, Row]]) -> dict[tuple[str, str], int]:
    """The keys of the created rows by (type, id) (BATCH_SQL's rows), also set in their versions."""
    made = {(t, i): pk for pk, t, i in rows}
    for row, version in created:
        version["resource_pk"] = made[row["resource_type"], row["id"]]
    return made


def _json(name: str, value: Any) -> Any:
    """A row's value as BATCH_SQL takes it: warnings serialised as the JSON type serialises them (json.dumps, as
    batch.serialise); the content is already."""
    return json.dumps(value) if name == "warnings" else value


RECORD = ("id", "kind", "source", "external_id", "patient_system", "patient_value", "clinical_at", "version",
          "content", "content_hash", "warnings", "created_at", "updated_at")
_RECORD = f"""WITH v AS (
  SELECT %s::varchar AS id, %s::varchar AS kind, %s::varchar AS source, %s::varchar AS external_id,
         %s::varchar AS patient_system, %s::varchar AS patient_value, %s::timestamp AS clinical_at,
         %s::integer AS version, %s::text AS content, %s::varchar AS content_hash, %s::text AS warnings,
         %s::timestamp AS created_at, %s::timestamp AS updated_at
), made AS (
  INSERT INTO {RecordRow.__tablename__} ({", ".join(RECORD)})
  SELECT id, kind, source, external_id, patient_system, patient_value, clinical_at, version, content::json,
         content_hash, warnings::json, created_at, updated_at FROM v{{}} RETURNING pk, content, warnings
)
INSERT INTO {RecordVersionRow.__tablename__} (record_pk, version, content, content_hash, warnings, created_at)
SELECT made.pk, v.version, made.content, v.content_hash, made.warnings, v.created_at FROM made, v
RETURNING record_pk"""  # noqa: S608 - the tables' names, no value
#: a new record and its first version, sent once (the content is the larger part of a request) and checked as JSON
#: once (the version's content and warnings are the record's, as its INSERT returns them); no row back when
#: a record holds its identity already (uq_records_identity), which the version's INSERT then does not make. It
#: reads no table, so it runs under a generic plan (pipeline.GENERIC): planning it cost ~0.1 ms of the server's CPU
RECORD_SQL = _RECORD.format("\n  ON CONFLICT ON CONSTRAINT uq_records_identity DO NOTHING")
#: RECORD_SQL held to go with the next statement (hold_record): a record holding its identity already fails it
#: (unique violation), which aborts the transaction, so nothing written with it commits, even if it was sent with the
#: COMMIT; with DO NOTHING, the "no row" would come back too late to undo what was written with it
HELD_RECORD_SQL = _RECORD.format("")


def add_record(connection: Connection, values: dict[str, Any]) -> int | None:
    """A new record's row and first version (`values`: its columns, content and warnings serialised already); its
    key, or None when a record holds its identity already (nothing is written then)."""
    found = driver.rows(connection, RECORD_SQL, [values[name] for name in RECORD], generic=True)
    return int(found[0][0]) if found else None


class IdentityHeld(Exception):
    """A record held back by hold_record met a record stored under its identity: its transaction is aborted."""


def hold_record(connection: Connection, values: dict[str, Any], made: Callable[[int], None]) -> bool:
    """add_record's row and version sent with the next statement of `connection`'s write transaction, or its COMMIT
    (driver.at_commit: a round trip fewer), `made` given its key once back; a record stored under its identity
    fails the statement, and the next or the COMMIT raises IdentityHeld. False where it cannot be held (SQLite, a
    savepoint): nothing is sent then."""
    params = [values[name] for name in RECORD]

    def failed(exc: Exception) -> BaseException:
        if getattr(getattr(exc, "diag", None), "constraint_name", None) == "uq_records_identity":
            return IdentityHeld()
        return driver.wrapped(connection, HELD_RECORD_SQL, params, exc)
    return driver.at_commit(connection, HELD_RECORD_SQL, params, failed, True, lambda rows: made(int(rows[0][0])))


EVENT = ("id", "recorded", "action", "outcome", "agent", "entity_types", "patients", "content")
#: an audit event's row (security/audit.py), its content the JSON text json.dumps makes, as the JSON type's; it reads
#: no table, so it may run under a generic plan (pipeline.GENERIC): with the COMMIT it follows the write's statements
#: that do, with no switch between them
EVENT_SQL = (f"INSERT INTO {AuditEventRow.__tablename__} ({', '.join(EVENT)}) "  # noqa: S608 - the table's names
             f"VALUES ({'%s, ' * (len(EVENT) - 1)}%s::json)")


def event_params(row: dict[str, Any]) -> list[Any]:
    """EVENT_SQL's values of an audit_events row."""
    return [json.dumps(row[name]) if name == "content" else row[name] for name in EVENT]


JOB = ("record_id", "record_kind", "record_version", "business_key", "next_attempt_at", "payload", "created_at",
       "updated_at")
#: a record's outbox jobs (exchange/outbox.queue), read, written and superseded in one statement where they were
#: three round trips: the enabled endpoints that take its kind (registry.Endpoints.taking: `kind in kinds.split()`),
#: a queued job for each in the names' order, and each endpoint's older queued jobs of its key marked done,
#: superseded by it (the UPDATE's snapshot is the statement's: it never sees the jobs `made` adds, as pk < the new
#: job's kept them out when it was its own statement; it still keeps out a newer job committed meanwhile). Under a
#: generic plan (pipeline.GENERIC; planning it for its values cost ~0.3 ms of the server's CPU a record), made once a
#: connection and again whenever ANALYZE changes the tables' statistics (autovacuum's, after 50 rows + 10 % changed):
#: its older jobs are read by ix_outbox_key, for the endpoint and key, on a table never analysed or analysed holding
#: jobs; a plan made just after the table was analysed empty reads it whole until the next analyse (a minute at most
#: with autovacuum's defaults; review of 657bb09: 824 buffers against 98 at 20,000 jobs). The plans made
#: for its values read every queued job (ix_outbox_claim) until the table was first analysed: linear in the jobs
#: waiting, every one while no worker sends or an EHR is down (/work/notes/pg-tools/explain_queue_generic.py)
QUEUE_SQL = f"""WITH taking AS (
  SELECT name FROM {EndpointRow.__tablename__}
  WHERE enabled IS true AND %(kind)s = ANY(regexp_split_to_array(kinds, '\\s+'))
), made AS (
  INSERT INTO {OutboxJobRow.__tablename__} (endpoint, record_id, record_kind, record_version, business_key, state,
                                            attempts, next_attempt_at, payload, created_at, updated_at)
  SELECT name, %(record_id)s, %(record_kind)s, %(record_version)s, %(business_key)s, 'queued', 0,
         %(next_attempt_at)s, %(payload)s::json, %(created_at)s, %(updated_at)s
  FROM taking ORDER BY name RETURNING pk, endpoint
), superseded AS (
  UPDATE {OutboxJobRow.__tablename__} AS o SET state = 'done', superseded_by = made.pk, finished_at = %(updated_at)s,
                                               updated_at = %(updated_at)s
  FROM made WHERE o.endpoint = made.endpoint AND o.business_key = %(business_key)s AND o.state = 'queued'
        AND o.pk < made.pk
)
SELECT pk FROM made ORDER BY pk"""  # noqa: S608 - the tables' names, no value


def queue_jobs(connection: Connection, kind: str, job: dict[str, Any], at_commit: bool = False) -> list[int] | None:
    """QUEUE_SQL: the keys of the jobs queued for the enabled endpoints taking `kind`, in their names' order (`job`:
    the JOB columns, the payload serialised). `at_commit`: sent with the COMMIT of the connection's write transaction
    (driver.at_commit) where it can, one round trip fewer, and None: its jobs are not seen in the transaction before
    it commits. A failure there raises what it would have raised here."""
    params = {"kind": kind, **{name: job[name] for name in JOB}}
    if at_commit and driver.at_commit(connection, QUEUE_SQL, params,
                                      lambda exc: driver.wrapped(connection, QUEUE_SQL, params, exc), generic=True):
        return None
    return [int(pk) for pk, in driver.rows(connection, QUEUE_SQL, params, generic=True)]


#: a current row's columns, in StoredResource's order
COLUMNS = "pk, resource_type, id, version, deleted, last_updated, content, warnings, record_id"
#: the rows of some (type, id) keys (Unit.prefetch's), tagged 0, and the first page of each of some searches of one
#: token (statements.TOKEN_MATCH's: current resources of a type holding `system|value` under a parameter, oldest
#: first, `count` at most), tagged by their place from 1. Each search's index rows are read first (ARRAY), then its
#: resources by key: planned for values the planner does not know, IN let it read every current resource of the type
LOOK_UP_SQL = f"""SELECT 0 AS n, {", ".join(f"r.{c}" for c in COLUMNS.split(", "))}
FROM unnest(%b::varchar[], %b::varchar[]) AS k(resource_type, id)
JOIN {R} AS r ON r.resource_type = k.resource_type AND r.id = k.id
UNION ALL
SELECT q.n, m.* FROM unnest(%b::integer[], %b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::integer[])
     AS q(n, resource_type, param, system, value, count)
CROSS JOIN LATERAL (
  SELECT {COLUMNS} FROM {R} WHERE resource_type = q.resource_type AND deleted IS false AND pk = ANY(ARRAY(
    SELECT resource_pk FROM {X} WHERE resource_type = q.resource_type AND param = q.param AND value = q.value
                                  AND system = q.system))
  ORDER BY pk LIMIT q.count) AS m
ORDER BY 1, 2"""  # noqa: S608 - the tables' names, no value
TOKEN = ("resource_type", "param", "system", "value", "count")


def look_up(connection: Connection, keys: list[tuple[str, str]],
            searches: list[dict[str, Any]]) -> dict[int, list[tuple[Any, ...]]]:
    """LOOK_UP_SQL's rows (COLUMNS) by tag: 0 for those of `keys`, n for those the n-th of `searches` (each with
    TOKEN_MATCH's parameters, statements.token_params) finds."""
    params: list[Any] = [[t for t, _ in keys], [i for _, i in keys], list(range(1, len(searches) + 1))]
    params += [[search[name] for search in searches] for name in TOKEN]
    found: dict[int, list[tuple[Any, ...]]] = {n: [] for n in range(len(searches) + 1)}
    for n, *row in driver.rows(connection, LOOK_UP_SQL, params):
        found[n].append(tuple(row))
    return found
