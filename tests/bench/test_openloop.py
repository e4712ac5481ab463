"""The open-loop serving readings (bench/openloop.py): the rates they are run at, the rows made from the Go
generator's JSON, and how issue 21's targets are judged on them, beside the closed-loop ones. Nothing is timed here:
tests/bench/test_loadgen.py runs the generator itself."""
from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench import openloop, readme, serving, targets


def reading(rate: float, scheduled: int, *, not_sent: int = 0, errors: int = 0, p99: float = 30.0,
            first: float = 10.0, last: float = 12.0, waited: int = 0) -> dict[str, Any]:
    """The generator's open-loop JSON (bench/loadgen/open.go), with what serving.load adds."""
    sent = scheduled - not_sent
    return {"mode": "open", "rate": rate, "scheduled": scheduled, "sent": sent, "not_sent": not_sent,
            "waited_for_connection": waited, "connections": openloop.connections(rate), "peak_in_flight": 5,
            "dialed": 5, "count": sent, "errors": errors, "seconds": 5.02, "per_second": (sent - errors) / 5.02,
            "cpu_s": 0.2, "p50_ms": first, "p99_ms": p99, "max_ms": p99 * 1.5, "p50_first_ms": first,
            "p50_last_ms": last, "send_lag_p99_ms": 0.4, "send_lag_max_ms": 1.0,
            "error_statuses": {"422": errors} if errors else {}, "load_cpu_share": 0.02}


def test_the_rates_are_three_times_hapis_of_the_same_run_and_150_records() -> None:
    rates = openloop.rates({"name": "HAPI FHIR 8.8.0 JPA", "creates": {"per_second": 41.5},
                            "searches": {"per_second": 90.0}})
    assert rates["creates"]["rate"] == pytest.approx(124.5)
    assert rates["searches"]["rate"] == pytest.approx(270.0)
    assert rates["domain_records"]["rate"] == 150.0
    assert "in this run" in rates["creates"]["from"] and "42/s" in rates["creates"]["from"]


@pytest.mark.parametrize("hapi", [None, {"name": "HAPI FHIR 8.8.0 JPA", "error": "not run: --no-hapi (QUICK=1)"},
                                  {"name": "HAPI", "creates": {"per_second": 0.0}, "searches": {"per_second": 0.0}}])
def test_without_hapis_rates_the_earlier_run_is_used_and_said(hapi: dict[str, Any] | None) -> None:
    rates = openloop.rates(hapi)
    assert rates["creates"]["rate"] == 3 * openloop.EARLIER_HAPI["creates"]
    assert rates["searches"]["rate"] == 3 * openloop.EARLIER_HAPI["searches"]
    assert all("not measured in this run" in rates[k]["from"] and openloop.EARLIER_HAPI_RUN in rates[k]["from"]
               for k in ("creates", "searches"))


def test_the_generator_keeps_a_second_of_the_schedule_in_flight() -> None:
    assert openloop.connections(10) == 32
    assert openloop.connections(129.3) == 130
    assert openloop.flags(129.3) == ["-rate", "129.300", "-drain", "10"]


def _ours(opened: dict[str, Any]) -> dict[str, Any]:
    part = {"per_second": 140.0, "p50_ms": 40.0, "p99_ms": 120.0, "errors": 0, "load_cpu_share": 0.02}
    return {"name": "ours, SQLite", "creates": part, "searches": part, "domain_records": part,
            "transaction_1000": {"status": 200, "seconds": 0.5}, "open_loop": opened}


def _opened() -> dict[str, Any]:
    rates = openloop.rates({"creates": {"per_second": 43.0}, "searches": {"per_second": 85.0}})
    return {"rates": rates,
            "creates": reading(129.0, 645, p99=41.0),  # keeps the rate
            "searches": reading(255.0, 1275, p99=75.0),  # keeps it, but its p99 is over 50 ms
            "domain_records": reading(150.0, 750, not_sent=300, p99=2900.0, first=40.0, last=2500.0, waited=310)}


def test_the_open_loop_targets_want_the_bound_and_every_request_answered() -> None:
    rows = {r["target"].split(": ")[1].split(" at ")[0]: r for r in openloop.targets("ours, SQLite", _opened())}

    assert rows["creates"]["verdict"] == "PASS" and rows["creates"]["off_by"] == pytest.approx(41 / 50)
    assert "at 129/s, p99 ≤ 50 ms" in rows["creates"]["target"] and "open loop" in rows["creates"]["target"]
    assert rows["searches"]["verdict"] == "MISS" and rows["searches"]["off_by"] == pytest.approx(75 / 50)
    records = rows["domain records"]
    assert records["verdict"] == "MISS" and records["off_by"] == pytest.approx(2900 / 100)
    assert "450 of 750 answered as expected (300 not sent" in records["measured"]


def test_requests_not_answered_miss_the_target_even_when_the_answered_ones_were_quick() -> None:
    opened = {"rates": openloop.rates(None), "creates": reading(129.0, 645, errors=129, p99=20.0),
              "searches": reading(255.0, 1275, not_sent=255, p99=20.0), "domain_records": {"error": "not run: x"}}
    rows = openloop.targets("ours, PostgreSQL", opened)

    assert rows[0]["verdict"] == "MISS" and rows[0]["off_by"] == pytest.approx(645 / 516)  # 129 were refused
    assert rows[1]["verdict"] == "MISS" and rows[1]["off_by"] == pytest.approx(1275 / 1020)  # 255 never sent
    assert rows[2]["verdict"] == "NOT RUN" and rows[2]["measured"] == "not run: x"


def test_both_readings_are_in_the_targets_each_labelled() -> None:
    hapi = {"name": "HAPI FHIR 8.8.0 JPA", "creates": {"per_second": 43.0, "p99_ms": 200.0},
            "searches": {"per_second": 85.0, "p99_ms": 200.0}}
    names = [r["target"] for r in targets.serving([_ours(_opened()), hapi])]

    assert "ours, SQLite: creates p99 ≤ 50 ms (closed loop, 8 clients at saturation)" in names
    assert ("ours, SQLite: creates at 129/s, p99 ≤ 50 ms, every request answered (open loop, from the intended send "
            "time)") in names
    assert ("ours, SQLite: domain records at 150/s, p99 ≤ 100 ms, every request answered (open loop, from the "
            "intended send time)") in names
    assert not any(n.startswith("HAPI") for n in names)  # targets are ours; HAPI's readings are in the table


def test_the_open_loop_table_shows_a_server_that_cannot_keep_the_rate() -> None:
    result = {"date": "2026-12-05T19:00:00+00:00", "load": "load average 1.00", "clients": 8, "seconds": 5,
              "open_seconds": 5, "generator_says": "Go", "contenders": [
                  _ours(_opened()) | {"config": "c", "load": "l", "warmup": {
                      "windows": 6, "window_s": 3, "steady_after": 6, "per_second": [140.0] * 6}},
                  {"name": "ours, PostgreSQL", "error": "not run: --no-postgres (QUICK=1)"}]}
    lines = serving.table(result)

    assert any(line.startswith("Closed loop: each of 8 clients") for line in lines)
    assert any(line.startswith("Open loop: requests sent at a fixed rate for 5 s") for line in lines)
    records = next(line for line in lines if line.startswith("| ours, SQLite: domain records") and "150 (" in line)
    assert records.startswith("| ours, SQLite: domain records (POST /api/v1/administrations) | 150 (750 in all) | 90 |")
    assert "| 40.0 → 2,500.0 | 300 (310 sent late: no free connection) | 0 | 0.4 | 2 % |" in records
    assert ("Rates: creates 129/s = 3 × 43/s (HAPI JPA's closed-loop rate in this run); searches 255/s = 3 × 85/s "
            "(HAPI JPA's closed-loop rate in this run); domain records 150/s = issue 21's target.") in lines
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
    assert openloop.rates(calls[-1][1])["creates"]["rate"] == 3 * openloop.EARLIER_HAPI["creates"]
