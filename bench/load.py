"""Load generator (run as its own process by bench/serving.py): POST one body repeatedly from N threads.

    python -m bench.load URL BODY.json SECONDS THREADS   → JSON on stdout: count, per_second, p50/p99 ms, errors

Each thread keeps one HTTP connection (requests.Session) and posts back to back; latency is measured
per request around the whole call.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import requests

from bench import stats


def main(argv: list[str]) -> int:
    url, body_path, seconds, threads = argv[0], argv[1], float(argv[2]), int(argv[3])
    with open(body_path, encoding="utf-8") as f:
        body = f.read()
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                answer = session.post(url, data=body, headers=headers, timeout=60)
                ok = answer.status_code == 201
            except requests.RequestException:
                ok = False
            latencies[i].append((time.perf_counter() - t0) * 1000)
            if not ok:
                errors[i] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    flat = [x for per in latencies for x in per]
    done = len(flat) - sum(errors)
    print(json.dumps({"count": len(flat), "errors": sum(errors), "seconds": elapsed, "per_second": done / elapsed,
                      "p50_ms": stats.median(flat), "p99_ms": stats.quantile(flat, 0.99)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
