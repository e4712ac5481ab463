"""Bulk import (`ketamine-fhir import FILE --kind K`): valid lines stored once, each bad line reported, crash-safe."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli.support import Done, kfhir
from factories import RECHECK_40_MIN, administration, assessment, esketamine_session
from sqlalchemy import Engine, text
from support.databases import copy_sqlite

from service.app.runtime import Runtime
from service.importer import import_file
from service.store.records import ListQuery

KFHIR = Path(sys.executable).parent / "ketamine-fhir"
DATA = Path(__file__).parent / "data" / "import"
SUMMARY = re.compile(r"^(\d+) lines: (\d+) created, (\d+) already present, (\d+) rejected, (\d+) warnings$")
CRASH_RECORDS = 400  # the import is killed at its first commit: a few hundred lines leave it mid-file
CRASH_APP_NAME = "kfhir-crash-import"  # PGAPPNAME of the import we kill, to see its backend go away


def cli_env(database_url: str) -> dict[str, str]:
    """The environment of the import process the crash test kills."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")}
    return env | {"KFHIR_DATABASE_URL": database_url, "PGAPPNAME": CRASH_APP_NAME}


def run_import(path: Path, kind: str, database_url: str, *extra: str) -> Done:
    """`ketamine-fhir import` in-process (tests/cli/support.py)."""
    return kfhir("import", path, "--kind", kind, *extra, database_url=database_url, cwd=path.parent)


def parse_human(stdout: str) -> tuple[dict[int, list[str]], dict[int, str], tuple[int, ...]]:
    """The human report as ({line: [fields]}, {line: message}, (lines, created, present, rejected, warnings))."""
    fields: dict[int, list[str]] = {}
    messages: dict[int, str] = {}
    current = 0
    summary: tuple[int, ...] = ()
    for row in stdout.splitlines():
        if match := re.match(r"^line (\d+): (.*)$", row):
            current = int(match[1])
            fields[current], messages[current] = [], match[2]
        elif row.startswith("    "):
            fields[current].append(row.strip().split(":", 1)[0])
        elif match := SUMMARY.match(row):
            summary = tuple(int(g) for g in match.groups())
    return fields, messages, summary


def stored_ids(runtime: Runtime, kind: str) -> list[str]:
    return [r.external_id for r in runtime.store.list(ListQuery(kind, limit=10_000))]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- JSON Lines through the CLI ------------------------------------------------------------

def mixed_sessions(tmp_path: Path) -> Path:
    """Three good sessions among blank lines and one bad line of each kind; numbers are file lines."""
    return write_lines(tmp_path / "sessions.jsonl", [
        json.dumps(administration(external_id="adm-ok-1")),                                     # 1
        "",                                                                                     # 2
        '{"external_id": "adm-broken", "status": ',                                             # 3 malformed
        json.dumps(administration(external_id="adm-naive", started_at="2026-03-02T09:00:00")),  # 4 no offset
        "   ",                                                                                  # 5
        json.dumps(esketamine_session(external_id="esk-900", vitals=[SYSTOLIC_900])),          # 6 impossible BP
        json.dumps(esketamine_session(external_id="esk-ok-1")),                                 # 7
        json.dumps(administration(external_id="adm-lots", dose_mg="lots")),                     # 8 not a number
        json.dumps(administration(external_id="adm-ok-2", session_number=2,                     # 9
                                  started_at="2026-03-05T09:00:00-05:00", ended_at="2026-03-05T09:40:00-05:00")),
        "",                                                                                     # 10
    ])


GOOD_SESSIONS = ["adm-ok-1", "esk-ok-1", "adm-ok-2"]
#: A systolic no living patient has (clinical.md "Data plausibility"): refused, naming the field.
SYSTOLIC_900 = {"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 900, "diastolic": 80}


@pytest.mark.both_backends  # batches committed as they go
def test_jsonl_import_stores_valid_lines_and_names_each_bad_line_and_field(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    result = run_import(mixed_sessions(tmp_path), "administration", database_url)

    assert result.returncode == 1, result.stderr
    fields, messages, summary = parse_human(result.stdout)
    assert fields == {3: [], 4: ["started_at"], 6: ["vitals[0].systolic"], 8: ["dose_mg"]}
    assert "Malformed JSON at line 1," in messages[3]  # the position within the line, not past its end
    assert "clinical rules" in messages[6]
    assert "offset" in result.stdout  # the reason for line 4, not just its field
    assert summary == (7, 3, 0, 4, 0)  # blank lines are not counted
    assert stored_ids(runtime, "administration") == GOOD_SESSIONS


@pytest.mark.both_backends  # the identity constraint
def test_importing_the_same_file_again_creates_no_duplicates(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    path = mixed_sessions(tmp_path)
    run_import(path, "administration", database_url)
    first = {r.external_id: r for r in runtime.store.list(ListQuery("administration"))}

    again = run_import(path, "administration", database_url)

    assert again.returncode == 1  # the bad lines are still bad
    assert parse_human(again.stdout)[2] == (7, 0, 3, 4, 0)
    now = runtime.store.list(ListQuery("administration"))
    assert [r.external_id for r in now] == GOOD_SESSIONS
    assert all(r == first[r.external_id] and r.version == 1 for r in now)
    assert all(len(runtime.store.versions(r)) == 1 for r in now)


def test_json_format_reports_every_bad_line_with_its_issues(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    result = run_import(mixed_sessions(tmp_path), "administration", database_url, "--format", "json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("kind", "lines", "created", "unchanged", "warnings")} == {
        "kind": "administration", "lines": 7, "created": 3, "unchanged": 0, "warnings": 0}
    assert [(e["line"], [i["field"] for i in e["issues"]]) for e in report["errors"]] == [
        (3, []), (4, ["started_at"]), (6, ["vitals[0].systolic"]), (8, ["dose_mg"])]
    assert "living patient" in report["errors"][2]["issues"][0]["message"]
    assert all(e["message"] for e in report["errors"])


def test_a_file_without_errors_exits_0(database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ok.jsonl", [json.dumps(assessment(external_id=f"a-{i}")) for i in range(3)])

    result = run_import(path, "assessment", database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert parse_human(result.stdout) == ({}, {}, (3, 3, 0, 0, 0))
    assert stored_ids(runtime, "assessment") == ["a-0", "a-1", "a-2"]


# --- JSON Lines in-process -----------------------------------------------------------------

def test_line_numbers_count_blank_lines_and_crlf_endings(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\r\n".join([json.dumps(assessment(external_id="a-1")).encode(), b"", b"[1, 2]",
                                   b"\xff\xfe not utf-8", json.dumps(assessment(external_id="a-2")).encode(), b""]))

    report = import_file(runtime.intake, path, "assessment")

    assert (report.lines, report.created) == (4, 2)
    assert [(e["line"], [i["field"] for i in e["issues"]]) for e in report.errors] == [(3, ["$"]), (4, [])]
    assert "UTF-8" in report.errors[1]["message"]


@pytest.mark.both_backends  # the identity constraint
def test_a_changed_record_under_a_stored_external_id_is_reported_not_overwritten(
        runtime: Runtime, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "twice.jsonl", [json.dumps(assessment(score=18)), json.dumps(assessment(score=9))])

    report = import_file(runtime.intake, path, "assessment")

    assert (report.created, [e["line"] for e in report.errors]) == (1, [2])
    assert "already exists with different content" in report.errors[0]["message"]
    assert [r.content["score"] for r in runtime.store.list(ListQuery("assessment"))] == [18]


def test_warnings_are_counted_and_the_record_stored(runtime: Runtime, tmp_path: Path) -> None:
    high_bp = [{"at": "2026-03-02T08:50:00-05:00", "phase": "pre", "systolic": 152, "diastolic": 94}, RECHECK_40_MIN]
    path = write_lines(tmp_path / "warn.jsonl", [json.dumps(esketamine_session(vitals=high_bp))])

    report = import_file(runtime.intake, path, "administration")

    assert (report.created, report.warnings, report.errors) == (1, 1, [])


# --- CSV -----------------------------------------------------------------------------------

def test_csv_rows_import_as_the_records_their_json_equivalents_make(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    """tests/data/import/administrations.csv and .jsonl hold the same two sessions: dotted headers,
    numbered list columns, true/FALSE, integers, decimals, digit-only text, empty cells."""
    csv_file = shutil.copy(DATA / "administrations.csv", tmp_path)
    result = run_import(Path(csv_file), "administration", database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert parse_human(result.stdout)[2] == (2, 2, 0, 0, 1)  # csv-esk-01 left without an escort (clinical.md §2)
    for line in (DATA / "administrations.jsonl").read_text().splitlines():
        record = json.loads(line)
        stored = runtime.store.find("administration", record["source"], record["external_id"])
        assert stored is not None
        assert stored.content == runtime.intake.check("administration", record).new.content
    # and the JSON file is therefore the same data: nothing new, nothing conflicting
    report = import_file(runtime.intake, DATA / "administrations.jsonl", "administration")
    assert (report.created, report.unchanged, report.errors) == (0, 2, [])


def test_csv_cells_take_their_fields_types(runtime: Runtime) -> None:
    import_file(runtime.intake, DATA / "administrations.csv", "administration")
    iv = runtime.store.find("administration", "clinic-a", "csv-iv-01")
    esk = runtime.store.find("administration", "clinic-a", "csv-esk-01")
    assert iv is not None and esk is not None

    assert (iv.content["patient"]["identifier"]["value"], iv.content["lot_number"]) == ("00042", "0042")
    assert (iv.content["dose_mg"], iv.content["weight_kg"], iv.content["session_number"]) == (35.5, 71, 1)
    assert (iv.content["discharged_with_escort"], esk.content["discharged_with_escort"]) == (True, False)
    assert iv.content["patient"]["name"]["given"] == ["Zulu", "Yankee"]
    assert [v["phase"] for v in iv.content["vitals"]] == ["pre", "intra", "post"]
    assert esk.content["vitals"][0] == {"at": "2026-03-05T09:50:00-05:00", "phase": "pre",
                                        "systolic": 130, "diastolic": 80}  # empty cells left out
    assert "weight_kg" not in esk.content and "birth_date" not in esk.content["patient"]
    assert esk.content["status_reason"] == "Patient asked to stop, felt unwell after the second device"


def test_numbered_csv_columns_keep_numeric_order_past_nine(runtime: Runtime, tmp_path: Path) -> None:
    scores = range(12)
    header = ["external_id", "source", "patient.identifier.system", "patient.identifier.value", "status",
              "medication", "route", "dose_mg", "started_at"]
    row = ["adm-many", "clinic-a", "https://clinic.example/mrn", "MRN-001", "completed", "ketamine",
           "intramuscular", "50", "2026-03-02T09:00:00-05:00"]
    for i in scores:
        header += [f"scores.{i}.instrument", f"scores.{i}.value", f"scores.{i}.at"]
        row += ["cadss", str(i), "2026-03-02T09:30:00-05:00"]
    path = write_lines(tmp_path / "many.csv", [",".join(header), ",".join(row)])

    report = import_file(runtime.intake, path, "administration")

    assert report.errors == []
    stored = runtime.store.find("administration", "clinic-a", "adm-many")
    assert stored is not None and [s["value"] for s in stored.content["scores"]] == list(scores)


WRONG_TYPES_CSV = """\
external_id,source,patient.identifier.system,patient.identifier.value,session_number,status,medication,route,dose_mg,weight_kg,started_at,ended_at,vitals.0.at,vitals.0.phase,vitals.0.systolic,discharged_with_escort
adm-good,clinic-a,https://clinic.example/mrn,MRN-001,1,completed,ketamine,intravenous,35,70,2026-03-02T09:00:00-05:00,2026-03-02T09:40:00-05:00,2026-03-02T08:50:00-05:00,pre,124,true
adm-lots,clinic-a,https://clinic.example/mrn,MRN-001,2,completed,ketamine,intravenous,lots,70,2026-03-05T09:00:00-05:00,2026-03-05T09:40:00-05:00,,,,true
adm-high,clinic-a,https://clinic.example/mrn,MRN-001,3,completed,ketamine,intravenous,35,70,2026-03-09T09:00:00-05:00,2026-03-09T09:40:00-05:00,2026-03-09T08:50:00-05:00,pre,high,true
adm-yes,clinic-a,https://clinic.example/mrn,MRN-001,4,completed,ketamine,intravenous,35,70,2026-03-12T09:00:00-05:00,2026-03-12T09:40:00-05:00,,,,yes
adm-two,clinic-a,https://clinic.example/mrn,MRN-001,two,completed,ketamine,intravenous,35,70.5kg,2026-03-16T09:00:00-05:00,2026-03-16T09:40:00-05:00,,,,false
"""


def test_csv_cells_of_the_wrong_type_are_reported_by_line_and_field(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "sessions.csv"
    path.write_text(WRONG_TYPES_CSV, encoding="utf-8")

    result = run_import(path, "administration", database_url)

    assert result.returncode == 1, result.stderr
    fields, _, summary = parse_human(result.stdout)
    assert {line: sorted(f) for line, f in fields.items()} == {
        3: ["dose_mg"], 4: ["vitals[0].systolic"], 5: ["discharged_with_escort"],
        6: ["session_number", "weight_kg"]}
    assert summary == (5, 1, 0, 4, 0)
    assert stored_ids(runtime, "administration") == ["adm-good"]


def test_a_csv_saved_by_excel_with_a_byte_order_mark_imports(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("\ufeff" + WRONG_TYPES_CSV.splitlines()[0] + "\n" + WRONG_TYPES_CSV.splitlines()[1] + "\n",
                    encoding="utf-8")

    report = import_file(runtime.intake, path, "administration")

    assert (report.created, report.errors) == (1, [])


def test_a_csv_row_with_more_cells_than_the_header_is_rejected(runtime: Runtime, tmp_path: Path) -> None:
    header, good = WRONG_TYPES_CSV.splitlines()[:2]
    path = write_lines(tmp_path / "extra.csv", [header, good + ",surplus"])

    report = import_file(runtime.intake, path, "administration")

    assert ([e["line"] for e in report.errors], report.created) == ([2], 0)


def test_a_csv_that_is_not_utf8_gets_a_clear_error_not_a_traceback(
        sqlite_template: Path, tmp_path: Path) -> None:
    database = copy_sqlite(sqlite_template, tmp_path / "kfhir.db")
    path = tmp_path / "latin1.csv"
    path.write_bytes(WRONG_TYPES_CSV.splitlines()[0].encode() + b"\n"
                     + WRONG_TYPES_CSV.splitlines()[1].replace("MRN-001", "M\u00fcller").encode("latin-1") + b"\n")

    result = run_import(path, "administration", f"sqlite:///{database}")

    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert "UTF-8" in result.stdout + result.stderr


# --- crash safety --------------------------------------------------------------------------

def crash_file(tmp_path: Path) -> tuple[Path, set[str]]:
    ids = [f"bulk-{i:05d}" for i in range(CRASH_RECORDS)]
    lines = [json.dumps(assessment(external_id=eid, score=i % 28, patient={
        "identifier": {"system": "https://clinic.example/mrn", "value": f"MRN-{i % 50:03d}"}}))
        for i, eid in enumerate(ids)]
    return write_lines(tmp_path / "bulk.jsonl", lines), set(ids)


def record_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM records")).scalar_one())


def assert_consistent(engine: Engine) -> None:
    """The file is sound, and every record has exactly its current version in record_versions, no more."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        mismatched = conn.execute(text(
            "SELECT r.external_id FROM records r LEFT JOIN record_versions v ON v.record_pk = r.pk "
            "GROUP BY r.pk, r.external_id, r.version, r.content_hash "
            "HAVING count(v.record_pk) <> 1 OR min(v.version) <> r.version "
            "OR min(v.content_hash) <> r.content_hash")).scalars().all()
        orphans = conn.execute(text(
            "SELECT count(*) FROM record_versions v "
            "WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.pk = v.record_pk)")).scalar_one()
    assert (mismatched, orphans) == ([], 0)


def wait_for_server_to_drop(engine: Engine) -> None:
    """PostgreSQL: until the killed import's backend is gone, its last COMMIT may still land."""
    if engine.dialect.name != "postgresql":
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                                {"n": CRASH_APP_NAME}).scalar_one():
                return
        time.sleep(0.02)
    pytest.fail("the killed import's PostgreSQL backend did not go away")


def kill_when_some_are_stored(proc: subprocess.Popen[bytes], engine: Engine) -> None:
    deadline = time.monotonic() + 30
    while record_count(engine) == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the import ended ({proc.returncode}) or stored nothing before it could be killed")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.both_backends  # what a killed connection leaves
def test_an_import_killed_midway_leaves_a_sound_database_and_a_rerun_stores_every_line_once(
        database_url: str, runtime: Runtime, tmp_path: Path) -> None:
    path, expected_ids = crash_file(tmp_path)
    proc = subprocess.Popen([str(KFHIR), "import", str(path), "--kind", "assessment"], env=cli_env(database_url),
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when_some_are_stored(proc, runtime.engine)
    wait_for_server_to_drop(runtime.engine)

    survived = record_count(runtime.engine)
    assert 0 < survived < CRASH_RECORDS, "the kill should land mid-import; make the file longer"
    assert_consistent(runtime.engine)

    rerun = run_import(path, "assessment", database_url)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert parse_human(rerun.stdout)[2] == (CRASH_RECORDS, CRASH_RECORDS - survived, survived, 0, 0)
    stored = stored_ids(runtime, "assessment")
    assert (len(stored), set(stored)) == (CRASH_RECORDS, expected_ids)
    assert_consistent(runtime.engine)

