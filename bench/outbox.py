"""Outbox benchmark: time to push the demo data to the HAPI FHIR peer, and the median per record.

    python -m bench.outbox [--hapi-url URL]

A fresh SQLite database, `ketamine-fhir db upgrade` and `seed-demo` (44 records: 5 plans, 19 dosing
sessions with their vital signs and scores, 3 adverse events, 17 assessments; each record queues one
job), then `ketamine-fhir push --endpoint hapi --format json`, which drains the queue once, one
transaction Bundle per record, and reports the wall time and the median per job. Without --hapi-url
the tests' HAPI FHIR 8.8.0 JPA peer (tests/peers/hapi_server.py, our IG, request validation on) is
started for the run. Writes bench/results/outbox-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
KFHIR = Path(sys.executable).parent / "ketamine-fhir"


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KFHIR), *args], env=env, cwd=cwd, capture_output=True, text=True,  # noqa: S603
                          check=False, timeout=1800)


def measure(base_url: str, folder: Path) -> dict[str, Any]:
    (folder / "endpoints.yaml").write_text(
        f"endpoints:\n  - name: hapi\n    base_url: {base_url}\n    mode: transaction\n    timeout_s: 120\n",
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")} | {
        "KFHIR_DATABASE_URL": f"sqlite:///{folder / 'bench.db'}", "KFHIR_LOG_LEVEL": "WARNING",
        "KFHIR_ENDPOINTS_FILE": str(folder / "endpoints.yaml")}
    for command in (("db", "upgrade"), ("seed-demo",)):
        done = run(*command, env=env, cwd=folder)
        if done.returncode != 0:
            raise SystemExit(f"ketamine-fhir {' '.join(command)} failed:\n{done.stderr}")
    started = time.perf_counter()
    pushed = run("push", "--endpoint", "hapi", "--format", "json", env=env, cwd=folder)
    wall = time.perf_counter() - started
    if pushed.returncode != 0:
        raise SystemExit(f"push failed (exit {pushed.returncode}):\n{pushed.stdout}{pushed.stderr}")
    summary: dict[str, Any] = json.loads(pushed.stdout)
    return summary | {"wall_seconds_with_process_start": round(wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hapi-url", help="a running HAPI FHIR server's base (default: start the tests' peer)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.hapi_url:
            result = measure(args.hapi_url, folder)
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from peers.hapi_server import HapiServer, build_ig_package

            with HapiServer.start(build_ig_package(folder / "ig")) as peer:
                result = measure(peer.base_url, folder)
    print(f"demo data to HAPI: {result['done']} records in {result['seconds']:.1f} s "
          f"(median {result['median_ms_per_job']:.0f} ms per record; {result['dead']} dead, {result['retry']} retry)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"outbox-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
