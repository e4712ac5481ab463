"""Load generator in Python (run as its own process by bench/serving.py when Go is absent, or with
--load-generator python; bench/loadgen/main.go is the same contract in Go): POST one body, or GET a list of URLs,
repeatedly from N threads.

    python -m bench.load URL BODY.json SECONDS THREADS [CONTENT_TYPE]     POST BODY to URL, expect 201
    python -m bench.load - URLS.txt SECONDS THREADS                        GET the URLs in turn, expect 200
    → JSON on stdout: count, per_second, p50/p99 ms, errors (other answers), cpu_s (this process's CPU time)

Each thread keeps one HTTP connection (requests.Session) and sends back to back; latency is measured
per request around the whole call. "__SEQ__" in the body becomes "<pid>-<thread>-<n>" in each request, so that
a body with a business identifier creates a new record each time instead of updating one. cpu_s lets the
parent report the load generator's share of the machine: it runs on the same 2 cores as the server. Under the GIL
the threads take 12–27 % of the 2 cores and their latencies include each thread's wait for the GIL: hence the Go
generator (bench/generator.py), which prints the same JSON.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

import requests

from bench import stats


def main(argv: list[str]) -> int:
    url, body_path, seconds, threads = argv[0], argv[1], float(argv[2]), int(argv[3])
    content_type = argv[4] if len(argv) > 4 else "application/fhir+json"
    with open(body_path, encoding="utf-8") as f:
        body = f.read()
    urls = body.split() if url == "-" else []
    # Accept and Accept-Encoding as requests sends them by default, said outright: bench/loadgen sends the same
    headers = {"Content-Type": content_type, "Prefer": "return=minimal", "Accept": "*/*",
               "Accept-Encoding": "gzip, deflate"}
    if os.environ.get("KFHIR_BENCH_TOKEN"):  # the service's API key, given by environment, not argv
        headers["Authorization"] = f"Bearer {os.environ['KFHIR_BENCH_TOKEN']}"
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    statuses: list[dict[str, int]] = [{} for _ in range(threads)]  # per thread: what the errors were
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        session = requests.Session()
        sent = 0
        while time.monotonic() < stop:
            target = urls[(i + sent * threads) % len(urls)] if urls else url
            data = None if urls else body.replace("__SEQ__", f"{os.getpid()}-{i}-{sent}")  # unique across runs
            sent += 1
            t0 = time.perf_counter()
            try:
                if data is None:
                    answer = session.get(target, headers=headers, timeout=60)
                else:
                    answer = session.post(target, data=data, headers=headers, timeout=60)
                ok, what = answer.status_code == (200 if data is None else 201), str(answer.status_code)
            except requests.RequestException as exc:
                ok, what = False, type(exc).__name__
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if not ok:
                errors[i] += 1
                statuses[i][what] = statuses[i].get(what, 0) + 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    flat = [x for per in latencies for x in per]
    done = len(flat) - sum(errors)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"count": len(flat), "errors": sum(errors), "seconds": elapsed, "per_second": done / elapsed,
                      "cpu_s": usage.ru_utime + usage.ru_stime,
                      "p50_ms": stats.median(flat), "p99_ms": stats.quantile(flat, 0.99),
                      "error_statuses": {k: sum(s.get(k, 0) for s in statuses) for s0 in statuses for k in s0}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
