"""The open-loop serving readings (bench/openloop.py): the rates they are run at, the rows made from the Go
generator's JSON, and how issue 21's targets are judged on them, beside the closed-loop ones. Nothing is timed here:
tests/bench/test_loadgen.py runs the generator itself."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import generator, openloop, readme, serving, targets
from bench.servers import Server


def reading(rate: float, scheduled: int, *, not_sent: int = 0, errors: int = 0, p99: float = 30.0,
            first: float = 10.0, last: float = 12.0, waited: int = 0, not_answered: int = 0) -> dict[str, Any]:
    """The generator's open-loop JSON (bench/loadgen/open.go), with what serving.load adds."""
    sent = scheduled - not_sent
    censored = not_sent + not_answered
    statuses = ({"422": errors - not_answered} if errors > not_answered else {}) | (
        {"NotAnswered": not_answered} if not_answered else {})
    return {"mode": "open", "rate": rate, "scheduled": scheduled, "sent": sent, "not_sent": not_sent,
            "waited_for_connection": waited, "connections": openloop.connections(rate), "peak_in_flight": 5,
            "dialed": 5, "count": sent, "errors": errors, "censored": censored, "seconds": 5.02,
            "per_second": (sent - errors) / 5.02, "gave_up_s": 15.0 if not_answered else None, "cpu_s": 0.2,
            "p50_ms": first, "p99_ms": p99, "max_ms": p99 * 1.5, "p50_first_ms": first, "p50_last_ms": last,
            "lower_bounds": ["p99_ms", "max_ms", "p50_last_ms"] if censored else [], "send_lag_p99_ms": 0.4,
            "send_lag_max_ms": 1.0, "error_statuses": statuses, "load_cpu_share": 0.02}


def hapi_results(creates: float = 43.0, searches: float = 85.0, **extra: Any) -> dict[str, Any]:
    return {"name": "HAPI FHIR 8.8.0 JPA", "creates": {"per_second": creates, "count": 215, "errors": 0} | extra,
            "searches": {"per_second": searches, "count": 425, "errors": 0}}


def write_results(folder: Path, day: str, contenders: list[dict[str, Any]], mtime: float) -> Path:
    path = folder / f"serving-{day}.json"
    path.write_text(json.dumps({"date": f"{day}T17:40:00+00:00", "contenders": contenders}), encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def test_the_rates_are_three_times_hapis_of_the_same_run_and_150_records() -> None:
    rates = openloop.rates(hapi_results(41.5, 90.0), {"creates": {"per_second": 1.0, "file": "f", "date": "d"}})
    assert rates["creates"]["rate"] == pytest.approx(124.5)
    assert rates["searches"]["rate"] == pytest.approx(270.0)
    assert rates["domain_records"]["rate"] == 150.0
    assert rates["creates"]["from"] == "3 × 41.5/s, HAPI JPA's closed-loop rate in this run"


def test_without_hapis_rates_the_latest_results_file_with_them_is_named(tmp_path: Path) -> None:
    """No typed-in figures: the rates come from the latest serving results that measured HAPI, named with its date;
    a later run without HAPI (QUICK), a HAPI with errors, and an unreadable file are passed over."""
    write_results(tmp_path, "2026-12-03", [hapi_results(40.0, 70.0)], 1_000)
    write_results(tmp_path, "2026-12-04", [{"name": "ours, SQLite"}, hapi_results(43.0, 85.0)], 2_000)
    write_results(tmp_path, "2026-12-05", [hapi_results(99.0, 99.0) | {"creates": {
        "per_second": 99.0, "count": 100, "errors": 5}, "searches": {"per_second": 0.0, "count": 0, "errors": 0}}],
        3_000)
    write_results(tmp_path, "2026-12-06", [{"name": "HAPI FHIR 8.8.0 JPA", "error": "not run: --no-hapi"}], 4_000)
    (tmp_path / "serving-2026-12-07.json").write_text("{not json", encoding="utf-8")

    before = openloop.earlier(tmp_path)
    assert before == {k: {"per_second": v, "file": "serving-2026-12-04.json", "date": "2026-12-04T17:40:00+00:00"}
                      for k, v in (("creates", 43.0), ("searches", 85.0))}
    rates = openloop.rates({"name": "HAPI FHIR 8.8.0 JPA", "error": "not run: --no-hapi (QUICK=1)"}, before)
    assert rates["creates"]["rate"] == 129.0 and rates["searches"]["rate"] == 255.0
    assert rates["creates"]["from"] == ("3 × 43.0/s, HAPI JPA's closed-loop rate in serving-2026-12-04.json "
                                        "(2026-12-04T17:40; HAPI JPA in this run: not run: --no-hapi (QUICK=1))")
    assert not hasattr(openloop, "EARLIER_HAPI")


@pytest.mark.parametrize(("hapi", "why"), [
    (None, "not run"),
    ({"name": "HAPI FHIR 8.8.0 JPA", "error": "not run: --no-hapi (QUICK=1)"}, "not run: --no-hapi (QUICK=1)"),
    (hapi_results(0.0, 0.0), "measured 0/s"),
    (hapi_results(200.0, 0.0, errors=30, count=1000), "30 errors in 1,000 requests")])
def test_a_hapi_rate_that_cannot_set_a_target_is_said_and_not_used(hapi: dict[str, Any] | None, why: str) -> None:
    """HAPI's rate counts only when it answered > 0/s with under 1 % errors; with no usable rate anywhere the rows
    are not run (at 0/s the ratio ours/1e-9 used to pass, and 3 × 0/s was an open loop at a rate of nothing)."""
    rates = openloop.rates(hapi, {})
    assert rates["creates"]["rate"] is None
    assert rates["creates"]["from"] == f"no rate: HAPI JPA in this run: {why}, and no earlier results file has a usable one"
    ours = _ours(openloop.rates(hapi, {}) and {"rates": rates, "domain_records": reading(150.0, 1500)})
    rows = {r["target"]: r for r in targets.serving([ours, hapi or {"name": "HAPI FHIR 8.8.0 JPA", "error": "x"}])}
    throughput = rows["ours, SQLite: creates ≥ 3× HAPI JPA (closed loop, 8 clients at saturation)"]
    assert throughput["verdict"] == "NOT RUN" and "no HAPI JPA rate to compare" in throughput["measured"]
    opened = next(r for t, r in rows.items() if t.startswith("ours, SQLite: creates at the target rate (no rate: "))
    assert opened["verdict"] == "NOT RUN"


def test_hapis_errors_under_one_percent_leave_its_rate_usable() -> None:
    assert openloop.usable({"per_second": 43.0, "count": 1000, "errors": 9}) == (43.0, "")
    assert openloop.usable({"per_second": 43.0, "count": 1000, "errors": 10})[0] is None


def test_an_open_loop_lasts_long_enough_for_its_requests() -> None:
    """A full run sends at least MIN_REQUESTS at every rate (the Go generator schedules floor(seconds × rate))."""
    for rate in (129.0, 129.37, 255.0, 150.0, 30.0):
        seconds = openloop.duration(rate, 5.0, openloop.MIN_REQUESTS)
        assert int(seconds * float(f"{rate:.3f}") + 1e-9) >= openloop.MIN_REQUESTS
        assert seconds < openloop.MIN_REQUESTS / rate + 0.01 or seconds == 5.0
    assert openloop.duration(255.0, 5.0, 1000) == 5.0 and openloop.duration(129.0, 2.0, 0) == 2.0


def test_the_generator_keeps_a_second_of_the_schedule_in_flight() -> None:
    assert openloop.connections(10) == 32
    assert openloop.connections(129.3) == 130
    assert openloop.flags(129.3) == ["-rate", "129.300", "-drain", "10"]


def _ours(opened: dict[str, Any]) -> dict[str, Any]:
    part = {"per_second": 140.0, "p50_ms": 40.0, "p99_ms": 120.0, "count": 700, "errors": 0, "load_cpu_share": 0.02}
    return {"name": "ours, SQLite", "creates": part, "searches": part, "domain_records": part,
            "transaction_1000": {"status": 200, "seconds": 0.5}, "open_loop": opened}


def _opened() -> dict[str, Any]:
    rates = openloop.rates(hapi_results(43.0, 85.0), {})
    return {"rates": rates,
            "creates": reading(129.0, 1290, p99=41.0),  # keeps the rate
            "searches": reading(255.0, 1275, p99=75.0),  # keeps it, but its p99 is over 50 ms
            "domain_records": reading(150.0, 1500, not_sent=300, p99=2900.0, first=40.0, last=2500.0, waited=310)}


def test_the_open_loop_targets_want_the_bound_and_every_request_answered() -> None:
    rows = {r["target"].split(": ")[1].split(" at ")[0]: r for r in openloop.targets("ours, SQLite", _opened())}

    assert rows["creates"]["verdict"] == "PASS" and rows["creates"]["off_by"] == pytest.approx(41 / 50)
    assert ("at 129/s (3 × 43.0/s, HAPI JPA's closed-loop rate in this run), p99 ≤ 50 ms" in rows["creates"]["target"]
            and "open loop" in rows["creates"]["target"])
    assert rows["creates"]["measured"].startswith("p99 41.0 ms (n 1,290); 1,290 of 1,290 answered as expected")
    assert rows["searches"]["verdict"] == "MISS" and rows["searches"]["off_by"] == pytest.approx(75 / 50)
    records = rows["domain records"]
    assert records["verdict"] == "MISS" and records["off_by"] == pytest.approx(2900 / 100)
    assert records["measured"].startswith("p99 ≥ 2,900.0 ms (n 1,500); 1,200 of 1,500 answered as expected (300 not "
                                          "sent, 0 not answered, 0 other errors)")
    assert "at 150/s (issue 21's target)" in records["target"]


def test_requests_not_answered_miss_the_target_even_when_the_answered_ones_were_quick() -> None:
    opened = {"rates": openloop.rates(hapi_results(), {}), "creates": reading(129.0, 1290, errors=258, p99=20.0,
                                                                              not_answered=200),
              "searches": reading(255.0, 1275, not_sent=255, p99=20.0), "domain_records": {"error": "not run: x"}}
    rows = openloop.targets("ours, PostgreSQL", opened)

    assert rows[0]["verdict"] == "MISS" and rows[0]["off_by"] == pytest.approx(1290 / 1032)  # 258 not answered
    assert "(0 not sent, 200 not answered, 58 other errors)" in rows[0]["measured"]
    assert rows[1]["verdict"] == "MISS" and rows[1]["off_by"] == pytest.approx(1275 / 1020)  # 255 never sent
    assert rows[2]["verdict"] == "NOT RUN" and rows[2]["measured"] == "not run: x"


def test_too_few_requests_give_no_verdict_and_say_so() -> None:
    """Under MIN_REQUESTS a p99 is the 10th largest or less: the row shows the figures, with n, and no verdict."""
    opened = {"rates": openloop.rates(hapi_results(), {}), "creates": reading(129.0, 258, p99=20.0),
              "searches": reading(255.0, 510, p99=900.0), "domain_records": reading(150.0, 300, not_sent=54, p99=4800)}
    rows = openloop.targets("ours, SQLite", opened)

    assert [r["verdict"] for r in rows] == ["NOT RUN"] * 3 and all(r["off_by"] is None for r in rows)
    assert rows[2]["measured"] == ("p99 ≥ 4,800.0 ms (n 300); 246 of 300 answered as expected (54 not sent, 0 not "
                                   "answered, 0 other errors); achieved 49/s; too few: 300 requests scheduled, a "
                                   "verdict needs 1,000")


def test_a_miss_never_reads_as_one() -> None:
    """645 scheduled and 644 answered is off by 1.0016: printed 1.002×, not "1.00×" beside MISS."""
    rows = [{"target": "t", "measured": "m", "off_by": 645 / 644, "verdict": "MISS"},
            {"target": "u", "measured": "m", "off_by": 0.999, "verdict": "PASS"},
            {"target": "v", "measured": "m", "off_by": 1.5, "verdict": "MISS"}]
    assert [targets.factor(r) for r in rows] == ["1.002×", "1.00×", "1.50×"]
    assert "| t | m | MISS | 1.002× |" in targets.markdown(rows)
    assert "| t | m | MISS | 1.002× |" in readme.targets(None, {"targets": rows})


def test_a_closed_loop_p99_with_errors_misses_however_fast() -> None:
    """A server answering 422 at once has a fine p99: the closed-loop p99 rows are MISS when any request failed."""
    ours = _ours(_opened())
    ours["creates"] = ours["creates"] | {"p99_ms": 8.0, "count": 700, "errors": 70, "error_statuses": {"422": 70}}
    rows = {r["target"]: r for r in targets.serving([ours, hapi_results()])}

    p99 = rows["ours, SQLite: creates p99 ≤ 50 ms (closed loop, 8 clients at saturation)"]
    assert p99["verdict"] == "MISS" and p99["off_by"] == pytest.approx(700 / 630)
    assert p99["measured"] == "8 ms (n 700), but MISS for errors: 70 requests not answered as expected (422: 70)"
    searches = rows["ours, SQLite: searches p99 ≤ 50 ms (closed loop, 8 clients at saturation)"]
    assert searches["measured"] == "120 ms (n 700)" and searches["verdict"] == "MISS"


def test_both_readings_are_in_the_targets_each_labelled() -> None:
    hapi = {"name": "HAPI FHIR 8.8.0 JPA", "creates": {"per_second": 43.0, "p99_ms": 200.0},
            "searches": {"per_second": 85.0, "p99_ms": 200.0}}
    names = [r["target"] for r in targets.serving([_ours(_opened()), hapi])]

    assert "ours, SQLite: creates p99 ≤ 50 ms (closed loop, 8 clients at saturation)" in names
    assert ("ours, SQLite: creates at 129/s (3 × 43.0/s, HAPI JPA's closed-loop rate in this run), p99 ≤ 50 ms, every "
            "request answered (open loop, from the intended send time)") in names
    assert ("ours, SQLite: domain records at 150/s (issue 21's target), p99 ≤ 100 ms, every request answered (open "
            "loop, from the intended send time)") in names
    assert not any(n.startswith("HAPI") for n in names)  # targets are ours; HAPI's readings are in the table


def test_the_open_loop_table_shows_a_server_that_cannot_keep_the_rate() -> None:
    result = {"date": "2026-12-05T19:00:00+00:00", "load": "load average 1.00", "clients": 8, "seconds": 5,
              "open_seconds": 5, "generator_says": "Go", "contenders": [
                  _ours(_opened()) | {"config": "c", "load": "l", "warmup": {
                      "windows": 6, "window_s": 3, "steady_after": 6, "per_second": [140.0] * 6}},
                  {"name": "ours, PostgreSQL", "error": "not run: --no-postgres (QUICK=1)"}]}
    lines = serving.table(result)

    assert any(line.startswith("Closed loop: each of 8 clients") for line in lines)
    assert any(line.startswith("Open loop: requests sent at a fixed rate whatever the answers") and "for at least 5 s"
               in line for line in lines)
    records = next(line for line in lines if line.startswith("| ours, SQLite: domain records") and "150 (" in line)
    assert records.startswith("| ours, SQLite: domain records (POST /api/v1/administrations) | 150 (1,500 in 10.0 s) | "
                              "239 | 40.0 | ≥ 2,900.0 (n 1,500) | ≥ 4,350.0 | 40.0 → ≥ 2,500.0 |")
    assert "| 300 (310 sent late: no free connection) | 0 | 5.0 | 0.4 | 2 % |" in records
    assert ("Rates: creates 129/s = 3 × 43.0/s, HAPI JPA's closed-loop rate in this run; searches 255/s = 3 × 85.0/s, "
            "HAPI JPA's closed-loop rate in this run; domain records 150/s = issue 21's target.") in lines
    # the README's section takes both tables, and says what each protocol is
    section = readme.serving({**result, "table": lines, "quick": False})
    assert "| server and operation | per s | p50 ms | p99 ms | errors | load generator CPU |" in section
    assert any(line.startswith("| server and operation, open loop |") for line in section)
    assert records in section
    assert "the closed loop (8 clients" in section[0] and "intended send time" in section[0]
    assert not any(line.startswith(("Configurations", "* ours")) for line in section)
    closed_only = lines[:lines.index(next(line for line in lines if line.startswith("Open loop:")))]
    older = readme.serving({**result, "table": closed_only + ["Configurations:"], "quick": False})
    assert "One protocol (this run had no open loop): the closed loop (8 clients" in older[0]
    assert "intended send time" not in older[0]


def test_an_open_loop_that_failed_is_a_row_not_a_lost_server() -> None:
    broken = _ours({"error": "not run: the open loop needs the Go generator (bench/load.py has no fixed-rate mode)"})
    lines = openloop.table([broken], 5)

    assert "| ours, SQLite | not run: the open loop needs the Go generator" in "\n".join(lines)
    assert all(r["verdict"] == "NOT RUN" for r in openloop.targets("ours, SQLite", broken["open_loop"]))


def test_hapi_runs_first_and_its_rates_reach_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """serving.run measures HAPI JPA before ours, since the open loop of ours runs at 3× HAPI's rates; the table
    keeps its order (SQLite, PostgreSQL, HAPI)."""
    calls: list[tuple[str, Any]] = []
    hapi = {"name": "HAPI FHIR 8.8.0 JPA", "creates": {"per_second": 40.0}, "searches": {"per_second": 80.0}}

    def measure(name: str, started: Any, args: Any, given: dict[str, Any] | None = None) -> dict[str, Any]:
        calls.append((name, given))
        return hapi if name.startswith("HAPI") else {"name": name}

    monkeypatch.setattr(serving, "_measure", measure)
    for factory in ("hapi", "ours", "ours_on_postgres"):
        monkeypatch.setattr(serving.servers, factory, lambda *a, **k: None)

    out = serving.run(argparse.Namespace(no_hapi=False, no_postgres=False, workers=2))

    assert [name for name, _ in calls] == ["HAPI FHIR 8.8.0 JPA", "ours, SQLite", "ours, PostgreSQL"]
    assert calls[1][1] is hapi and calls[2][1] is hapi
    assert [c["name"] for c in out] == ["ours, SQLite", "ours, PostgreSQL", "HAPI FHIR 8.8.0 JPA"]
    skipped = serving.run(argparse.Namespace(no_hapi=True, no_postgres=True, workers=2))
    assert skipped[-1]["error"] == "not run: --no-hapi (QUICK=1)"
    assert openloop.rates(calls[-1][1], {})["creates"]["rate"] is None


class FakeGenerator:
    """serving.load's generator, answering from a table instead of sending anything: closed-loop figures, and for an
    open loop (a rate given) whatever `opened` says (a reading, or an exception to raise)."""

    def __init__(self, opened: Any, refused: str | None = None) -> None:
        self.opened, self.refused, self.rates = opened, refused, list[tuple[str, float]]()

    def __call__(self, url: str, body: Any, seconds: float, args: Any, token: str | None,
                 content_type: str = "application/fhir+json", rate: float | None = None) -> dict[str, Any]:
        if rate is None:  # 1 in 10 refused at the URLs ending with self.refused
            errors = 70 if self.refused and url.endswith(self.refused) else 0
            return {"count": 700, "errors": errors, "seconds": seconds, "per_second": 140.0, "cpu_s": 0.1,
                    "p50_ms": 40.0, "p99_ms": 120.0, "error_statuses": {"500": errors} if errors else {},
                    "load_cpu_share": 0.02}
        self.rates.append((url, rate))
        if isinstance(self.opened, Exception):
            raise self.opened
        return dict(self.opened)


@contextlib.contextmanager
def fake_server(name: str, ours: bool) -> Iterator[Server]:
    yield Server(name, "http://127.0.0.1:9/fhir", "key" if ours else None, "a test's", ours)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """serving.suite with everything that would reach a server replaced: the seed, the plan, the transaction, the
    probes."""
    class Stored:
        status_code = 201

        def json(self) -> dict[str, Any]:
            return {}

    monkeypatch.setattr(serving, "seed", lambda base, token: {"resourceType": "MedicationAdministration"})
    monkeypatch.setattr(serving, "transaction", lambda base, entries, token: {"status": 200, "seconds": 0.5,
                                                                               "entries": entries})
    monkeypatch.setattr(serving.requests, "post", lambda *a, **k: Stored())
    monkeypatch.setattr(serving, "probe_baseline", lambda base, token: 5.0)


def _args(tmp_path: Path, kind: str = "go") -> argparse.Namespace:
    return argparse.Namespace(seconds=0.1, open_seconds=0.1, open_requests=0, window=0.1, max_warmup=0.5, clients=8,
                              workers=2, generator=generator.Generator(["x"], kind, "a test's"), out_dir=tmp_path)


@pytest.mark.usefixtures("no_server")
def test_hapis_own_open_loop_runs_at_the_same_rates_as_ours(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HAPI's suite takes its rates from its own closed loop, ours from HAPI's results: the same numbers, and when
    HAPI's closed loop cannot set them (here: its creates failed), the same earlier file for both."""
    write_results(tmp_path, "2026-12-04", [hapi_results(43.0, 85.0)], 1_000)
    for failed in (False, True):
        # failed: HAPI's closed-loop creates answered, but 1 in 10 was refused: its rate is not used
        load = FakeGenerator(reading(129.0, 1290), "/MedicationAdministration" if failed else None)
        monkeypatch.setattr(serving, "load", load)
        with fake_server("HAPI FHIR 8.8.0 JPA", False) as peer:
            hapi = serving.suite(peer, _args(tmp_path))
        with fake_server("ours, SQLite", True) as server:
            ours = serving.suite(server, _args(tmp_path), hapi)

        assert {k: hapi["open_loop"]["rates"][k] for k in ("creates", "searches")} == {
            k: ours["open_loop"]["rates"][k] for k in ("creates", "searches")}
        expected = 129.0 if failed else 3 * 140.0
        assert hapi["open_loop"]["rates"]["creates"]["rate"] == pytest.approx(expected)
        hapi_rates = [rate for _, rate in load.rates[:2]]
        assert hapi_rates == [r for _, r in load.rates[2:4]]  # HAPI's creates and searches, then ours
        if failed:
            assert "serving-2026-12-04.json" in ours["open_loop"]["rates"]["creates"]["from"]


@pytest.mark.usefixtures("no_server")
@pytest.mark.parametrize("failure", ["generator", "closed JSON", "rates"])
def test_an_open_loop_that_fails_leaves_the_closed_loop_figures_written(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: str) -> None:
    """serving.main end to end with the servers replaced: whatever the open loop does (the generator exits with an
    error, answers a closed-loop JSON, or the rates cannot be read), the closed-loop figures are in the results file
    and the open loop's rows say what failed."""
    opened: Any = (subprocess.CalledProcessError(1, ["loadgen"]) if failure == "generator" else
                   {"count": 1, "errors": 0, "seconds": 1.0, "per_second": 1.0, "cpu_s": 0.0, "p50_ms": 1.0,
                    "p99_ms": 1.0, "error_statuses": {}})
    write_results(tmp_path, "2026-12-04", [hapi_results(43.0, 85.0)], 1_000)
    monkeypatch.setattr(serving.generator, "choose", lambda kind: generator.Generator(
        [sys.executable, "-c", "import json; print(json.dumps(" + repr(opened if failure == "closed JSON" else {})
         + "))"], "go", "a test's"))
    if failure != "closed JSON":
        monkeypatch.setattr(serving, "load", FakeGenerator(opened))
    else:  # the real serving.load, running a "generator" that prints a closed-loop JSON whatever it is asked
        real = serving.load
        monkeypatch.setattr(serving, "load", lambda *a, **k: FakeGenerator(None)(*a, **k) if (
            k.get("rate", a[6] if len(a) > 6 else None) is None) else real(*a, **k))
    if failure == "rates":
        monkeypatch.setattr(serving.openloop, "earlier", lambda folder: 1 / 0)
    monkeypatch.setattr(serving.servers, "ours", lambda workers, folder, url, name: fake_server(name, True))
    monkeypatch.setenv("QUICK", "1")

    assert serving.main(["--out-dir", str(tmp_path), "--seconds", "0.1", "--window", "0.1"]) == 0

    written = json.loads(next(p for p in tmp_path.glob("serving-*.json") if p.name != "serving-2026-12-04.json").read_text(encoding="utf-8"))
    ours = written["contenders"][0]
    assert ours["name"] == "ours, SQLite" and ours["creates"]["per_second"] == 140.0
    assert ours["domain_records"]["p99_ms"] == 120.0
    opened_out = ours["open_loop"]
    if failure == "rates":
        assert opened_out == {"error": "ZeroDivisionError: division by zero"}
    else:
        why = {"generator": "CalledProcessError", "closed JSON": "not an open-loop reading (mode None"}[failure]
        assert all(why in opened_out[k]["error"] for k in ("creates", "searches", "domain_records"))
    assert any(line.startswith("| ours, SQLite: creates (POST MedicationAdministration) | 140 |")
               for line in written["table"])
    assert all(r["verdict"] == "NOT RUN" for r in written["targets"] if "open loop" in r["target"])


@pytest.mark.usefixtures("no_server")
def test_a_quick_run_leaves_the_days_full_results_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A QUICK run writes serving-quick-<date>.json/.md (bench/results_files.py): the day's full run, under its own
    name, keeps HAPI's rates for the open loop and the README's figures, both of which read the full run's file."""
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    full = write_results(tmp_path, today, [{"name": "ours, SQLite"}, hapi_results(43.0, 85.0)], 1_000)
    kept = full.read_bytes()
    monkeypatch.setattr(serving.generator, "choose", lambda kind: generator.Generator(["x"], "go", "a test's"))
    monkeypatch.setattr(serving, "load", FakeGenerator(reading(129.0, 258)))
    monkeypatch.setattr(serving.servers, "ours", lambda workers, folder, url, name: fake_server(name, True))
    monkeypatch.setenv("QUICK", "1")

    assert serving.main(["--out-dir", str(tmp_path), "--seconds", "0.1", "--window", "0.1"]) == 0

    assert full.read_bytes() == kept
    quick = json.loads((tmp_path / f"serving-quick-{today}.json").read_text(encoding="utf-8"))
    assert quick["quick"] and (tmp_path / f"serving-quick-{today}.md").exists()
    assert f"serving-{today}.json" in quick["contenders"][0]["open_loop"]["rates"]["creates"]["from"]
    assert openloop.earlier(tmp_path)["creates"]["file"] == full.name  # the QUICK file is newer, and passed over
    assert readme.latest("serving", tmp_path)["contenders"][1]["creates"]["per_second"] == 43.0
    full.unlink()  # with no full run, the README shows the QUICK one (and says QUICK)
    assert readme.latest("serving", tmp_path)["quick"]


def test_after_requests_left_unanswered_the_next_measurement_waits_for_an_idle_server(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real server whose /metadata is slow for its first 4 probes (still working off abandoned requests), then
    quick: wait_idle polls until 3 quick answers in a row and says how long it took; serving.open_loop calls it
    after a measurement with NotAnswered only. Slow is 0.6 s and the baseline 60 ms (quick: within 200 ms), so a
    quick answer stays quick on a loaded machine (at 35 ms, make test at load 13 counted 11 probes, not 7)."""
    slow = {"left": 4}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if slow["left"] > 0:
                slow["left"] -= 1
                threading.Event().wait(0.6)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
    try:
        idle = serving.wait_idle(base, None, 60.0, limit_s=20)
        assert idle["bound_ms"] == 200 and idle["idle"] and idle["probes"] == 7 and 2.4 <= idle["waited_s"] < 20
        assert idle["last_ms"] < 200
        slow["left"] = 1000
        busy = serving.wait_idle(base, None, 60.0, limit_s=1.0)
        assert not busy["idle"] and 1.0 <= busy["waited_s"] < 3
    finally:
        httpd.shutdown()
        httpd.server_close()

    waits: list[float] = []
    monkeypatch.setattr(serving, "probe_baseline", lambda base, token: 5.0)
    monkeypatch.setattr(serving, "wait_idle", lambda base, token, baseline: waits.append(baseline) or {"waited_s": 1})
    monkeypatch.setattr(serving, "load", lambda url, *a, **k: reading(150.0, 300, errors=9, not_answered=9)
                        if url == "records" else reading(129.0, 258))
    out = serving.open_loop({"creates": ("creates", {}, "x"), "domain_records": ("records", {}, "x")},
                            openloop.rates(hapi_results(), {}), _args(tmp_path), base, None)
    assert waits == [5.0] and out["domain_records"]["idle"] == {"waited_s": 1} and "idle" not in out["creates"]
