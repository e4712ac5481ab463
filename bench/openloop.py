"""Open-loop serving readings, beside the closed-loop table: requests at a constant arrival rate, each timed from
its intended send time (bench/loadgen/open.go, wrk2's rule), so a server that cannot keep the rate shows it.

The closed loop (8 clients, each sending its next request when its last is answered) runs each server at
saturation, so its latency is mostly the client count over the throughput (Little's law) and a slow answer holds
back the requests that would have met it. Issue 21's targets read "p99 ≤ 50 ms at the measured throughput"
(creates and searches at ≥ 3× HAPI JPA) and "150 records/s with p99 ≤ 100 ms": the open loop sends at exactly that
rate (3× HAPI's closed-loop creates and searches rate, from this run or, when this run has no usable one, from the
latest results file that has; 150 clinic records/s) and reports the rate achieved, p50/p99/max from the intended send
time, how the median moved from the schedule's first fifth to its last (a queue that grows), the requests that could
not be sent and those that failed. A request not sent or not answered is censored, not dropped: it counts in every
figure at the least it waited, and a figure it reaches is printed "≥"."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench import results_files

#: issue 21: creates and searches at ≥ 3× HAPI JPA, p99 ≤ 50 ms at that throughput
HAPI_FACTOR = 3.0
#: issue 21: ≥ 150 clinic records/s with p99 ≤ 100 ms
RECORDS_RATE = 150.0
P99_MS = {"creates": 50.0, "searches": 50.0, "domain_records": 100.0}
#: a p99 of fewer requests is the 10th largest or less: no verdict below this many scheduled (the full run sends at
#: least this many at each rate, bench/serving.py --open-requests; QUICK does not, and its rows say so)
MIN_REQUESTS = 1000
#: HAPI's closed-loop rate sets a target only with fewer errors than this share: a server answering errors fast
#: would otherwise set a rate for the wrong work
HAPI_ERROR_SHARE = 0.01
#: seconds after the schedule's end that the answers still awaited are waited for (then counted as NotAnswered)
DRAIN_S = 10.0
OPERATIONS = (("creates", "creates (POST MedicationAdministration)"),
              ("searches", "searches (patient or status, _count=10)"),
              ("domain_records", "domain records (POST /api/v1/administrations)"))
#: the generator's open-loop JSON (bench/loadgen/open.go): serving.load refuses an answer without these keys
KEYS = frozenset({"mode", "rate", "scheduled", "sent", "not_sent", "waited_for_connection", "connections",
                  "peak_in_flight", "dialed", "count", "errors", "censored", "seconds", "per_second", "gave_up_s",
                  "cpu_s", "p50_ms", "p99_ms", "max_ms", "p50_first_ms", "p50_last_ms", "lower_bounds",
                  "send_lag_p99_ms", "send_lag_max_ms", "error_statuses"})


def usable(part: dict[str, Any] | None) -> tuple[float | None, str]:
    """HAPI's closed-loop rate for one operation, or None and why it cannot set a target: it must have run, answered
    more than 0/s, and failed fewer than 1 % of its requests."""
    if not part or "per_second" not in part:
        return None, "not measured"
    count, errors, per_second = part.get("count", 0), part.get("errors", 0), part["per_second"] or 0.0
    if errors and errors >= HAPI_ERROR_SHARE * max(count, 1):
        return None, f"{errors:,} errors in {count:,} requests"
    if per_second <= 0:
        return None, "measured 0/s"
    return per_second, ""


def _hapi(contenders: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in contenders if c.get("name", "").startswith("HAPI") and "error" not in c), None)


def earlier(results: Path) -> dict[str, dict[str, Any]]:
    """For creates and searches, HAPI JPA's usable closed-loop rate in the latest full run's serving-<date>.json of
    `results` that has one (QUICK runs measure no HAPI): {key: {"per_second", "file", "date"}}; a key no file has is
    left out."""
    found: dict[str, dict[str, Any]] = {}
    for path in reversed(results_files.full_runs(results, "serving")):
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
            hapi = _hapi(res["contenders"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a serving result this code can read: not a source of rates
        for key in ("creates", "searches"):
            rate, _ = usable((hapi or {}).get(key))
            if rate and key not in found:
                found[key] = {"per_second": rate, "file": path.name, "date": str(res.get("date", "?"))}
    return found


def rates(hapi: dict[str, Any] | None, before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each operation's rate, {"rate": per second or None, "from": where it comes from}: 3× HAPI JPA's closed-loop
    creates and searches rate (`hapi`: HAPI's results of this run, None or an {"error"} when it did not run), else
    3× the rate in `before` (earlier(): the latest results file with one), else none (the row is not run); 150
    clinic records/s."""
    out: dict[str, dict[str, Any]] = {}
    for key in ("creates", "searches"):
        why = (hapi or {}).get("error") or "not run"
        measured, problem = (None, why) if hapi is None or "error" in hapi else usable(hapi.get(key))
        if measured:
            out[key] = {"rate": HAPI_FACTOR * measured,
                        "from": f"3 × {measured:,.1f}/s, HAPI JPA's closed-loop rate in this run"}
            continue
        here = f"HAPI JPA in this run: {problem}"
        if key in before:
            b = before[key]
            out[key] = {"rate": HAPI_FACTOR * b["per_second"],
                        "from": f"3 × {b['per_second']:,.1f}/s, HAPI JPA's closed-loop rate in {b['file']} "
                                f"({b['date'][:16]}; {here})"}
        else:
            out[key] = {"rate": None, "from": f"no rate: {here}, and no earlier results file has a usable one"}
    out["domain_records"] = {"rate": RECORDS_RATE, "from": "issue 21's target"}
    return out


def duration(rate: float, seconds: float, requests: int) -> float:
    """How long an open loop at `rate` runs: `seconds`, or longer if that is what `requests` requests take (to the
    millisecond above, so that the schedule holds at least that many)."""
    return max(seconds, math.ceil(requests / rate * 1000) / 1000)


def connections(rate: float) -> int:
    """The most requests the generator keeps in flight: a second of the schedule (at least 32), so that it waits for a
    free connection only once the server is a second behind, and counts it when it does."""
    return max(32, math.ceil(rate))


def flags(rate: float) -> list[str]:
    """The Go generator's options for an open loop at `rate` (its arguments follow, CLIENTS being connections())."""
    return ["-rate", f"{rate:.3f}", "-drain", f"{DRAIN_S:g}"]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def figure(part: dict[str, Any], key: str) -> str:
    """A latency figure, "≥" before it when a request the generator gave up on reaches it (a lower bound)."""
    at_least = "≥ " if key in (part.get("lower_bounds") or []) and part.get(key) is not None else ""
    return at_least + _ms(part.get(key))


def not_answered(part: dict[str, Any]) -> int:
    return int((part.get("error_statuses") or {}).get("NotAnswered", 0))


def row(name: str, part: dict[str, Any]) -> str:
    """One table row from the generator's open-loop JSON (with "load_cpu_share" and, after requests the server still
    held, "idle" added by bench/serving.py)."""
    if "error" in part:
        return f"| {name} | {part['error']} | | | | | | | | | | |"
    waited = part["waited_for_connection"]
    not_sent = f"{part['not_sent']:,}" + (f" ({waited:,} sent late: no free connection)" if waited else "")
    errors = f"{part['errors']:,}" + (f" ({', '.join(f'{k}: {v}' for k, v in part['error_statuses'].items())})"
                                       if part.get("error_statuses") else "")
    gave_up = part.get("gave_up_s")
    until = f"{part['seconds']:,.1f}" + (f" / {gave_up:,.1f}" if gave_up is not None else "")
    n = part["scheduled"]
    return (f"| {name} | {part['rate']:,.0f} ({n:,} in {n / part['rate']:,.1f} s) | {part['per_second']:,.0f} | "
            f"{figure(part, 'p50_ms')} | {figure(part, 'p99_ms')} (n {n:,}) | {figure(part, 'max_ms')} | "
            f"{figure(part, 'p50_first_ms')} → {figure(part, 'p50_last_ms')} | {not_sent} | {errors} | {until} | "
            f"{_ms(part['send_lag_p99_ms'])} | {part['load_cpu_share'] * 100:,.0f} % |")


def table(contenders: list[dict[str, Any]], seconds: float) -> list[str]:
    lines = [f"Open loop: requests sent at a fixed rate whatever the answers (the target rates: 3× HAPI JPA's "
             f"closed-loop creates and searches rate, 150 clinic records/s), for at least {seconds:g} s and, in a "
             f"full run, long enough for {MIN_REQUESTS:,} requests (a target's verdict needs that many), each timed "
             f"from its intended send time, so a queue is counted, not hidden. A request not sent by the schedule's "
             f"end, or not answered {DRAIN_S:g} s after it, is censored: it counts in p50, p99, max and the fifths "
             f"at the least it waited (one not answered: to the drain's end; one not sent: to the first moment a "
             f"connection could have come free for it, after every request before it in the schedule), so a figure "
             f"marked ≥ is only a lower bound. Achieved: answers as expected over the time from the first intended "
             f"send to the last answer received; after it, the last give-up (the schedule's end for requests not "
             f"sent, the drain's end for requests not answered). A server that "
             f"cannot keep the rate shows an achieved rate below it, a median growing from the schedule's first fifth "
             f"to its last, and requests not sent (the generator keeps up to a second of the schedule in flight). "
             f"Send lag: how late the generator itself sent (waiting for the CPU it shares, or for a connection), "
             f"which the latencies include.", "",
             "| server and operation, open loop | rate asked /s | achieved /s | p50 ms | p99 ms | max ms | "
             "p50 first → last fifth ms | not sent | errors | last answer / gave up s | send lag p99 ms | "
             "load generator CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    idle = []
    for c in contenders:
        if "error" in c:
            continue  # the closed-loop table says why
        opened = c.get("open_loop") or {"error": "not run"}
        if "error" in opened:
            lines.append(row(c["name"], opened))
            continue
        for key, label in OPERATIONS:
            if key in opened:
                lines.append(row(f"{c['name']}: {label}", opened[key]))
                if i := opened[key].get("idle"):
                    idle.append(f"after {c['name']}: {label.split(' (')[0]}, {i['waited_s']:,.1f} s until "
                                f"{'idle' if i['idle'] else 'the wait ended, not idle'} ({i['probes']} probes of "
                                f"{i['url']}, the last {i['last_ms']:,.0f} ms against {i['baseline_ms']:,.0f} ms "
                                f"before the open loop)")
    said = dict.fromkeys(f"{label.split(' (')[0]} {'—' if r['rate'] is None else format(r['rate'], ',.0f')}/s = "
                         f"{r['from']}" for c in contenders if "rates" in (opened := c.get("open_loop") or {})
                         for key, label in OPERATIONS if (r := opened["rates"].get(key)))  # once each, in order
    if said:
        lines += ["", "Rates: " + "; ".join(said) + "."]
    if idle:
        lines += ["", "The server still held requests the generator gave up on, so the next measurement waited for it "
                      "to be idle: " + "; ".join(idle) + "."]
    return lines


def targets(name: str, opened: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 21's targets read at a fixed arrival rate: for each operation, p99 (from the intended send time, the
    censored requests counted at their lower bounds) within the bound with every scheduled request answered as
    expected; off by p99 over the bound, or, when some were not sent or not answered as expected, by the larger of
    that and scheduled over answered. No verdict under MIN_REQUESTS scheduled requests."""
    rows = []
    for key, label in OPERATIONS:
        bound = P99_MS[key]
        part = (opened or {}).get(key)
        given = (opened or {}).get("rates", {}).get(key) or {}
        rate, source = given.get("rate"), given.get("from", "no rate")
        at = f"at {rate:,.0f}/s ({source})" if rate else f"at the target rate ({source})"
        target = (f"{name}: {label.split(' (')[0]} {at}, p99 ≤ {bound:g} ms, every request answered (open loop, "
                  f"from the intended send time)")
        if part is None or "error" in part or "error" in (opened or {}):
            why = (part or {}).get("error") or (opened or {}).get("error") or "not run"
            rows.append({"target": target, "measured": why, "off_by": None, "verdict": "NOT RUN"})
            continue
        answered = part["count"] - part["errors"]
        scheduled, p99 = part["scheduled"], part["p99_ms"]
        off = (p99 or math.inf) / bound
        if answered < scheduled:  # a request not sent or not answered as expected misses, however quick
            off = max(off, scheduled / max(answered, 1))
        unanswered = not_answered(part)
        measured = (f"p99 {figure(part, 'p99_ms')} ms (n {scheduled:,}); {answered:,} of {scheduled:,} answered as "
                    f"expected ({part['not_sent']:,} not sent, {unanswered:,} not answered, "
                    f"{part['errors'] - unanswered:,} other errors); achieved {part['per_second']:,.0f}/s")
        if scheduled < MIN_REQUESTS:
            rows.append({"target": target, "measured": f"{measured}; too few: {scheduled:,} requests scheduled, a "
                         f"verdict needs {MIN_REQUESTS:,}", "off_by": None, "verdict": "NOT RUN"})
            continue
        rows.append({"target": target, "measured": measured, "off_by": off, "verdict": "PASS" if off <= 1 else "MISS"})
    return rows
