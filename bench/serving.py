"""Serving benchmark: ours and the HAPI FHIR JPA server on equal terms, each configured for the load.

    python -m bench.serving [--seconds 5] [--open-seconds 5] [--open-requests 1000] [--clients 8] [--workers 2]
                            [--no-hapi] [--no-postgres] [--load-generator go|python]

Servers (bench/servers.py says how each is configured; the table prints it): ours under `gunicorn -w 2` on a
SQLite file and on PostgreSQL, and the HAPI FHIR 8.8.0 JPA server (C2, G1 with a 2 GB heap, a durable H2 file,
our IG and request validation). Each gets the same seed (the resources a ketamine MedicationAdministration
refers to, and 50 administrations to read), then the same load from one generator in its own process, the same
for every server of a run (bench/generator.py: bench/loadgen in Go, a goroutine and a keep-alive connection per
client; bench/load.py, Python threads, when Go is absent or with --load-generator python; the table says which):

1. warm-up: creates in windows of `--window` seconds until the median throughput of the last 3 windows is
   within 10 % of the 3 before (bench/protocol.is_steady), at most `--max-warmup` seconds (60); how many
   windows it took is printed;
2. creates (POST MedicationAdministration, validated), reads (GET by id), searches (GET
   MedicationAdministration?patient=…&_count=10 and ?status=completed&_count=10), each for `--seconds` (5);
3. one 1,000-entry transaction Bundle (vital-sign Observations of one new patient), timed alone;
4. ours only: POST /api/v1/administrations (a clinic's session record, with vitals and scores: mapped,
   validated, stored, and queued for the EHR endpoint the server is given), each request a new record of a stored
   treatment plan (PLAN), so the plan and course rules run as they do in a clinic;
5. open loop (bench/openloop.py): creates and searches at 3× HAPI JPA's closed-loop rate of this run (HAPI runs
   first for that, and runs its own open loop at the same rates; a run without a usable HAPI rate takes the latest
   results file's, and says which), and for ours domain records at 150/s, each for `--open-seconds` or as long as
   `--open-requests` requests take (1,000 in a full run, so that a p99 has a verdict; none in QUICK), requests sent
   on a fixed schedule and timed from their intended send time, so a server that cannot keep the rate shows it.
   After a measurement that left requests unanswered (the server may still be working on them), the next waits
   until the server is idle (wait_idle), and the table says how long.

Steps 1-4 are a closed loop (`--clients` clients, each sending when its last answer came: the server at
saturation). Throughput counts answers 201/200 only; p50/p99 are over every request. The load generator shares
the 2 cores with the server (by design: they are the machine's only cores), so its CPU share is printed beside
each row.
The targets table says by what factor each target of issue 21 is off. Writes bench/results/serving-<date>.json
and .md (serving-quick-<date> under QUICK, which leaves the day's full results alone: bench/results_files.py)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import requests

from bench import generator, machine, openloop, protocol, results_files, servers, targets
from bench.servers import Server

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLES = ROOT / "profiles" / "examples"
GOLDEN = ROOT / "tests" / "mapping" / "golden"
READ_IDS = 50
#: the longest wait for a server to finish the requests an open loop gave up on (wait_idle)
IDLE_LIMIT_S = 30.0
# The racemic IV plan the golden session record names (plan-7, the same patient): 0.5 mg/kg over 40 min, six
# sessions twice a week (clinical.md section 1), so each session is checked against its plan and course.
PLAN = {"external_id": "plan-7", "source": "clinic-a", "status": "active",
        "patient": {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-1001"}},
        "indication": {"code": "trd"}, "prior_antidepressant_trials": 3, "medication": "ketamine",
        "route": "intravenous", "dose": {"value": 0.5, "unit": "mg/kg"}, "infusion_minutes": 40, "phase": "induction",
        "sessions_planned": 6, "frequency": {"count": 2, "period": 1, "period_unit": "wk"},
        "period": {"start": "2026-03-02", "end": "2026-03-20"},
        "prescriber": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9990000017"},
                       "name": "Dr. A. Prescriber"}}
SEARCHES = ("MedicationAdministration?patient=Patient/demo-alpha&_count=10",
            "MedicationAdministration?status=completed&_count=10")


def headers(token: str | None, content_type: str = "application/fhir+json") -> dict[str, str]:
    return {"Content-Type": content_type} | ({"Authorization": f"Bearer {token}"} if token else {})


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    doc.pop("text", None)
    return doc


def seed(base: str, token: str | None) -> dict[str, Any]:
    """Create what the administration example refers to and READ_IDS administrations to read; return the
    administration to post."""
    session = requests.Session()
    session.headers.update(headers(token))
    docs = [example(name) for name in ("Patient-demo-alpha", "Practitioner-demo-nurse", "Practitioner-demo-prescriber",
                                       "Condition-trd-alpha", "MedicationRequest-iv-induction-alpha",
                                       "Encounter-iv-session-1")]
    administration = example("MedicationAdministration-iv-session-1")
    docs += [administration | {"id": f"bench-read-{k}"} for k in range(READ_IDS)]
    for doc in docs:  # the examples refer to each other by these ids: update-as-create keeps them
        answer = session.put(f"{base}/{doc['resourceType']}/{doc['id']}", data=json.dumps(doc), timeout=120)
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"seeding {doc['resourceType']}/{doc['id']}: {answer.status_code} {answer.text[:300]}")
    administration.pop("id")
    return administration


def transaction_bundle(entries: int) -> dict[str, Any]:
    patient = "urn:uuid:00000000-0000-4000-8000-000000000000"
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "gender": "female"},
         "request": {"method": "POST", "url": "Patient"}}]}
    for i in range(entries - 1):
        bundle["entry"].append({"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i + 1:012d}", "resource": {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": patient},
            "effectiveDateTime": f"2026-03-02T{8 + i // 600:02d}:{(i // 10) % 60:02d}:{i % 10:02d}-05:00",
            "valueQuantity": {"value": 60 + i % 40, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}, "request": {"method": "POST", "url": "Observation"}})
    return bundle


def load(url: str, body: dict[str, Any] | list[str], seconds: float, args: argparse.Namespace, token: str | None,
         content_type: str = "application/fhir+json", rate: float | None = None) -> dict[str, Any]:
    """The run's load generator (args.generator: the Go one, or bench/load.py) for `seconds`: POST `body` to `url`,
    or GET the URLs of a list; closed loop with args.clients clients, or, given a `rate`, open loop at that rate
    (the Go generator only: bench/openloop.py); adds the generator's share of the machine's CPU."""
    if rate is not None and args.generator.kind != "go":
        return {"error": "not run: the open loop needs the Go generator (bench/load.py has no fixed-rate mode)"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write("\n".join(body) if isinstance(body, list) else json.dumps(body))
    env = dict(os.environ) | ({"KFHIR_BENCH_TOKEN": token} if token else {})  # a key is kept off the command line
    try:
        opened = [] if rate is None else openloop.flags(rate)
        clients = args.clients if rate is None else openloop.connections(rate)
        command = [*args.generator.command, *opened, "-" if isinstance(body, list) else url, f.name, str(seconds),
                   str(clients), content_type]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env,  # noqa: S603
                              check=True)
    finally:
        os.unlink(f.name)
    result: dict[str, Any] = json.loads(done.stdout)
    if rate is not None and (result.get("mode") != "open" or not set(result) >= openloop.KEYS):
        missing = sorted(openloop.KEYS - set(result))
        raise RuntimeError(f"the generator's answer is not an open-loop reading (mode {result.get('mode')!r}; "
                           f"missing {', '.join(missing[:6])})")
    # over the time it measured: to the last answer, or to the give-up when nothing was answered
    measured = result["seconds"] or result.get("gave_up_s") or seconds
    result["load_cpu_share"] = result["cpu_s"] / (measured * (os.cpu_count() or 1))
    return result


def warm_up(url: str, body: dict[str, Any], args: argparse.Namespace, token: str | None) -> dict[str, Any]:
    """Creates in windows until the throughput changes by < 10 % over 3 windows, or --max-warmup seconds."""
    began, rates = time.monotonic(), list[float]()
    while not protocol.is_steady(rates, 3, 0.10) and time.monotonic() - began < args.max_warmup:
        rates.append(load(url, body, args.window, args, token)["per_second"])
    after = protocol.steady_after(rates, 3, 0.10)
    return {"windows": len(rates), "window_s": args.window, "steady_after": after, "per_second": rates,
            "seconds": time.monotonic() - began}


def transaction(base: str, entries: int, token: str | None) -> dict[str, Any]:
    body = json.dumps(transaction_bundle(entries))
    started = time.perf_counter()
    answer = requests.post(base, data=body, headers=headers(token), timeout=300)
    return {"entries": entries, "status": answer.status_code, "seconds": time.perf_counter() - started}


def suite(server: Server, args: argparse.Namespace, hapi: dict[str, Any] | None = None) -> dict[str, Any]:
    """The closed-loop measurements, then the open loop at the target rates (bench/openloop.py): 3× `hapi`'s
    creates and searches rates (HAPI JPA's results of this run; HAPI's own suite takes its own), 150 records/s."""
    began = time.monotonic()
    base, token = server.base, server.token
    body = seed(base, token)
    url = f"{base}/MedicationAdministration"
    out: dict[str, Any] = {"name": server.name, "config": server.config, "load": machine.load_average(),
                           "warmup": warm_up(url, body, args, token)}
    out["creates"] = load(url, body, args.seconds, args, token)
    out["reads"] = load("-", [f"{url}/bench-read-{k}" for k in range(READ_IDS)], args.seconds, args, token)
    searches = [f"{base}/{s}" for s in SEARCHES]
    out["searches"] = load("-", searches, args.seconds, args, token)
    out["transaction_1000"] = transaction(base, 1000, token)
    fixed_rate: dict[str, tuple[str, Any, str]] = {"creates": (url, body, "application/fhir+json"),
                                                   "searches": ("-", searches, "application/fhir+json")}
    if server.ours:
        record = json.loads((GOLDEN / "administration.record.json").read_text(encoding="utf-8"))
        record.pop("_scenario", None)
        record["external_id"] = "bench-__SEQ__"
        api = base.removesuffix("/fhir") + "/api/v1"
        stored = requests.post(f"{api}/treatment-plans", data=json.dumps(PLAN),
                               headers=headers(token, "application/json"), timeout=120)
        if stored.status_code != 201 or stored.json().get("findings"):
            raise RuntimeError(f"seeding plan-7: {stored.status_code} {stored.text[:300]}")
        domain = f"{api}/administrations"
        load(domain, record, min(args.window, args.seconds), args, token, "application/json")  # warm-up
        out["domain_records"] = load(domain, record, args.seconds, args, token, "application/json")
        fixed_rate["domain_records"] = (domain, record, "application/json")
    try:  # the same rates for HAPI's own open loop as for ours: both from HAPI's closed loop (or the same file)
        rates = openloop.rates(hapi if server.ours else out, openloop.earlier(args.out_dir))
        out["open_loop"] = open_loop(fixed_rate, rates, args, base, token)
    except Exception as exc:  # noqa: BLE001 - whatever fails in the open loop, the closed-loop figures are kept
        out["open_loop"] = {"error": _failed(exc)}
    out["seconds"] = time.monotonic() - began
    return out


def _failed(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def open_loop(fixed_rate: dict[str, tuple[str, Any, str]], rates: dict[str, dict[str, Any]],
              args: argparse.Namespace, base: str, token: str | None) -> dict[str, Any]:
    """Each operation of `fixed_rate` ({key: (url or "-", body or URLs, content type)}) at its rate, for
    args.open_seconds or as long as args.open_requests take; a failure is reported in place of the readings, and the
    closed-loop ones are kept. After one that left requests unanswered, the server is waited for until idle."""
    if args.generator.kind != "go":
        return {"error": "not run: the open loop needs the Go generator (bench/load.py has no fixed-rate mode)"}
    out: dict[str, Any] = {"rates": rates}
    baseline: float | None = None
    for key, (url, body, content_type) in fixed_rate.items():
        rate = rates[key]["rate"]
        if rate is None:
            out[key] = {"error": f"not run: {rates[key]['from']}"}
            continue
        try:
            baseline = probe_baseline(base, token) if baseline is None else baseline
            out[key] = load(url, body, openloop.duration(rate, args.open_seconds, args.open_requests), args, token,
                            content_type, rate)
            if openloop.not_answered(out[key]):
                out[key]["idle"] = wait_idle(base, token, baseline)
        except Exception as exc:  # noqa: BLE001 - the generator failed: said in the row, the other readings kept
            out[key] = {"error": _failed(exc)}
    return out


def probe(base: str, token: str | None, timeout: float = 10.0) -> float:
    """Milliseconds for GET {base}/metadata, a cheap request every server answers (inf when it fails)."""
    started = time.perf_counter()
    try:
        requests.get(f"{base}/metadata", headers=headers(token), timeout=timeout).raise_for_status()
    except requests.RequestException:
        return float("inf")
    return (time.perf_counter() - started) * 1e3


def probe_baseline(base: str, token: str | None) -> float:
    """The idle server's probe time: the median of 5, taken before its open loop."""
    return sorted(probe(base, token) for _ in range(5))[2]


def wait_idle(base: str, token: str | None, baseline_ms: float, limit_s: float = IDLE_LIMIT_S) -> dict[str, Any]:
    """Poll the probe until 3 in a row answer within 3× the baseline (+ 20 ms), at most `limit_s` seconds: requests
    the generator gave up on may still be queued in the server, and the next measurement should not pay for them."""
    began, quick, probes, last = time.monotonic(), 0, 0, float("inf")
    bound = 3 * baseline_ms + 20
    while quick < 3 and (left := limit_s - (time.monotonic() - began)) > 0:
        last = probe(base, token, timeout=max(min(10.0, left), 0.1))
        probes += 1
        quick = quick + 1 if last <= bound else 0
        if quick < 3:
            time.sleep(0.2)
    return {"waited_s": time.monotonic() - began, "idle": quick >= 3, "probes": probes, "last_ms": last,
            "baseline_ms": baseline_ms, "bound_ms": bound, "url": "GET /metadata"}


def _measure(name: str, started: AbstractContextManager[Server], args: argparse.Namespace,
             hapi: dict[str, Any] | None = None) -> dict[str, Any]:
    """One server's suite, or {"name", "error"} when it cannot start or fails: reported, never dropped."""
    print(f"serving: {name}…", file=sys.stderr, flush=True)
    began = time.monotonic()
    try:
        with started as server:
            out = suite(server, args, hapi)
    except Exception as exc:  # noqa: BLE001 - Java, Maven or PostgreSQL missing, a start or a seed failed
        out = {"name": name, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    out["wall_s"] = time.monotonic() - began
    print(f"serving: {name} in {out['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """HAPI JPA first (unless --no-hapi), since its closed-loop rates set the open loop's rates for ours; the
    results in the table's order: ours on SQLite, on PostgreSQL, HAPI."""
    with tempfile.TemporaryDirectory(prefix="kfhir-bench-serving-") as tmp:
        folder = Path(tmp)
        if args.no_hapi:
            hapi = {"name": "HAPI FHIR 8.8.0 JPA", "error": "not run: --no-hapi (QUICK=1)"}
        else:
            (folder / "hapi").mkdir()
            hapi = _measure("HAPI FHIR 8.8.0 JPA", servers.hapi(folder / "hapi"), args)
        (folder / "sqlite").mkdir()
        out = [_measure("ours, SQLite", servers.ours(args.workers, folder / "sqlite", None, "ours, SQLite"), args,
                        hapi)]
        if args.no_postgres:
            out.append({"name": "ours, PostgreSQL", "error": "not run: --no-postgres (QUICK=1)"})
        else:
            out.append(_measure("ours, PostgreSQL", servers.ours_on_postgres(args.workers, folder), args, hapi))
    return [*out, hapi]


def _row(name: str, part: dict[str, Any]) -> str:
    errors = f"{part['errors']:,}" + (f" ({', '.join(f'{k}: {v}' for k, v in part['error_statuses'].items())})"
                                       if part.get("error_statuses") else "")
    return (f"| {name} | {part['per_second']:,.0f} | {part['p50_ms']:,.1f} | {part['p99_ms']:,.1f} | {errors} | "
            f"{part['load_cpu_share'] * 100:,.0f} % |")


def _warmup(c: dict[str, Any]) -> str:
    w = c["warmup"]
    rates = ", ".join(f"{r:,.0f}" for r in w["per_second"])
    state = (f"steady after {w['steady_after']} of {w['windows']}" if w["steady_after"]
             else f"not steady after {w['windows']}")
    return f"{state} windows of {w['window_s']:g} s ({rates} creates/s)"


def table(result: dict[str, Any]) -> list[str]:
    lines = [f"## Serving, {result['date'][:10]}", "",
             f"Load while measuring: {result['load']}. The 2 cores are shared by design: the server, its database "
             f"and the load generator ({result['clients']} clients, so {result['clients']} requests at once, in its "
             f"own process) all run on them, and other work ran beside; the generator's share of the machine's CPU "
             f"is in the last column. {result['seconds']:g} s per measurement after the warm-up.", "",
             f"Load generator: {result['generator_says']}.", "",
             f"Closed loop: each of {result['clients']} clients sends its next request when its last is answered, so "
             f"each server runs at saturation and its latency is mostly {result['clients']} requests in flight over "
             f"its throughput (Little's law).", "",
             "| server and operation | per s | p50 ms | p99 ms | errors | load generator CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    notes = []
    for c in result["contenders"]:
        if "error" in c:
            lines.append(f"| {c['name']} | {c['error']} | | | | |")
            continue
        for key, label in (("creates", "creates (POST MedicationAdministration)"), ("reads", "reads (GET by id)"),
                           ("searches", "searches (patient or status, _count=10)"),
                           ("domain_records", "domain records (POST /api/v1/administrations)")):
            if key in c:
                lines.append(_row(f"{c['name']}: {label}", c[key]))
        tx = c["transaction_1000"]
        lines.append(f"| {c['name']}: 1,000-entry transaction | {tx['seconds']:,.2f} s | | | "
                     f"{'' if tx['status'] == 200 else tx['status']} | |")
        notes.append(f"* {c['name']}: {c['config']}; warm-up {_warmup(c)}; load at its start: {c['load']}.")
    opened = openloop.table(result["contenders"], result.get("open_seconds", result["seconds"]))
    return lines + ["", *opened, "", "Configurations:", ""] + notes


def main(argv: list[str] | None = None) -> int:
    quick = os.environ.get("QUICK", "") not in ("", "0")
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0 if quick else 5.0, help="per measurement")
    parser.add_argument("--window", type=float, default=1.0 if quick else 3.0, help="warm-up window, seconds")
    parser.add_argument("--max-warmup", type=float, default=4.0 if quick else 60.0, help="warm-up cap, seconds")
    parser.add_argument("--open-seconds", type=float, default=None,
                        help="per open-loop measurement (bench/openloop.py); --seconds when not given")
    parser.add_argument("--open-requests", type=int, default=0 if quick else openloop.MIN_REQUESTS,
                        help="each open-loop measurement lasts at least as long as this many requests take at its rate")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load-generator", choices=("go", "python"), default="go",
                        help="go (bench/loadgen, built once; load.py when Go is absent) or python (bench/load.py)")
    parser.add_argument("--no-hapi", action="store_true", default=quick, help="do not run the HAPI JPA server")
    parser.add_argument("--no-postgres", action="store_true", default=quick, help="do not run ours on PostgreSQL")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.open_seconds = args.seconds if args.open_seconds is None else args.open_seconds
    args.generator = generator.choose(args.load_generator)  # built before any server starts, used for every one
    print(f"serving: load generator {args.generator.says}", file=sys.stderr, flush=True)
    before = machine.load_average()
    started = time.monotonic()
    contenders = run(args)
    result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "seconds": args.seconds,
              "open_seconds": args.open_seconds, "open_requests": args.open_requests,
              "clients": args.clients, "generator": args.generator.kind, "generator_says": args.generator.says,
              "quick": quick, "contenders": contenders, "load": machine.load_span(before)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = results_files.stem(args.out_dir, "serving", result["date"][:10], quick)
    # the measurements first, as they are: should the judging or the tables below fail, they are not lost
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    result["targets"] = targets.serving(contenders, args.clients)
    result["wall_s"] = time.monotonic() - started
    text = "\n".join(table(result) + ["", "Targets (serving; off by: how far from the target, 1.00 or less meets "
                                          "it):", ""] + targets.markdown(result["targets"]))
    print(text)
    stem.with_suffix(".json").write_text(json.dumps(result | {"table": text.splitlines()}, indent=1) + "\n",
                                         encoding="utf-8")
    stem.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(f"\nFigures in {stem}.json and .md ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
