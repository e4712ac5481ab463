"""Issue 20's done-when, measured (a tool, not a test: nothing here asserts a time): one client against
`ketamine-fhir serve --production` (gunicorn, KFHIR_WORKERS at its default) at the service's defaults, on SQLite
in a temporary folder, loopback only. For each attack: its answers, the slowest request and the most any server
process grew in resident memory over its size before the attack (sampled every 20 ms from /proc).

    .venv/bin/python tests/security/measure_attacks.py          # about a minute; prints a table and `uptime`

Attacks (issue 20 items 1-3, and item 4's burst): $validate and create bodies (refused absurd arrays, and the
worst bodies the limits accept), search criteria (refused and the worst accepted, over 300 stored
Observations), sign-ins with distinct usernames (16 at once), bad tokens; and, for scale, a transaction of as many of
our IG's examples as the defaults accept."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from service.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for support.serving
from security.test_attack_validate import ig_transaction  # noqa: E402
from support.serving import migrated, script_env, served  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"
FHIR = "application/fhir+json"
LOINC = "http://loinc.org"


def cpu_s(root: int) -> float:
    """CPU seconds the server's processes have used (user + system): what a burst costs whatever the load."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in server_pids(root):
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_pids(root: int) -> list[int]:
    """The server process and its children (gunicorn's workers)."""
    found = [root]
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(root)], capture_output=True, text=True, check=False)
    return found + [int(p) for p in out.stdout.split()]


@contextmanager
def repeating(step: Callable[[], None], pause: float) -> Iterator[None]:
    """`step` again and again in a thread, `pause` seconds apart, while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            step()
            time.sleep(pause)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextmanager
def memory(root: int) -> Iterator[dict[str, int]]:
    """The most any server process grew (KiB) while the block ran, sampled every 20 ms."""
    pids = server_pids(root)
    before = {p: rss_kib(p) for p in pids}
    grown = {"kib": 0}

    def sample() -> None:
        for p in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a worker replaced
                grown["kib"] = max(grown["kib"], rss_kib(p) - before[p])

    with repeating(sample, 0.02):
        yield grown


def timed(url: str, data: str, headers: dict[str, str]) -> tuple[int, float, int]:
    started = time.perf_counter()
    answer = requests.post(url, data=data, headers=headers, timeout=600)
    return answer.status_code, time.perf_counter() - started, len(answer.content)


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads((EXAMPLES / "Observation-bp-esketamine-session-1-pre.json").read_text())
    for key in ("id", "partOf", "encounter", "performer"):  # no references to resources this database lacks
        resource.pop(key, None)
    resource["subject"] = {"display": "anonymous"}
    return resource | changes


def values_in(node: Any) -> int:
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return 1 + sum(values_in(child) for child in children)


def bodies() -> dict[str, dict[str, Any]]:
    """The $validate and create bodies: refused ones, and the largest the defaults accept in a few shapes."""
    coding = {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}
    component = {"code": {"coding": [coding] * 3}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}
    return {
        "200,000 empty notes (refused)": observation(note=[{}] * 200_000),
        "100,000 notes (refused)": observation(note=[{"text": "x"}] * 100_000),
        "999 components x 3 codings": observation(component=[component] * 999),
        "999 empty notes + 999 components x 3 codings": observation(
            note=[{}] * 999, component=[{"code": {"coding": [coding] * 3}}] * 999),
        "999 notes of 18 unknown elements": observation(note=[{f"x{i}": 1 for i in range(18)}] * 999),
    }


def searches() -> dict[str, list[tuple[str, str]]]:
    codes = [f"{LOINC}|{1000 + i}-{i % 10}" for i in range(3000)]
    return {
        "500 OR'd codes (refused)": [("code", ",".join(codes[:500]))],
        "3,000 code:not (refused)": [("code:not", c) for c in codes[:3000]],
        "2 x 100 OR'd codes": [("code", ",".join(codes[:100])), ("code:not", ",".join(codes[100:200]))],
        "30 parameters, 200 alternatives": [("code:not" if i % 2 else "code", ",".join(codes[i * 7:i * 7 + 7]))
                                            for i in range(28)] + [("date", "ge2000"), ("category", "vital-signs")],
        "100 codes x 98 categories x date x _sort": [
            ("code", ",".join(codes[:100])), ("category", ",".join(codes[100:197]) + ",vital-signs"),
            ("date", "ge2000-01-01"), ("_sort", "-date")],
    }


@contextmanager
def victim(url: str, headers: dict[str, str]) -> Iterator[list[float]]:
    """Another client reading `url` every 100 ms while the block runs: how long each of its requests took."""
    took: list[float] = []

    def read() -> None:
        started = time.perf_counter()
        requests.get(url, headers=headers, timeout=120)
        took.append(time.perf_counter() - started)

    with repeating(read, 0.1):
        yield took


def sign_in_burst(base: str) -> tuple[list[int], float]:
    """32 sign-ins, 16 at once, each a new username: statuses and the slowest POST."""
    def attempt(i: int) -> tuple[int, float]:
        with requests.Session() as s:
            form = s.get(f"{base}/admin/sign-in", timeout=60).text
            token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            started = time.perf_counter()
            answer = s.post(f"{base}/admin/sign-in", data={"csrf_token": token, "username": f"nobody{i}",
                                                          "password": "guess"}, timeout=60)
            return answer.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(32)))
    return [s for s, _ in results], max(t for _, t in results)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="kfhir-measure-"))
    url = f"sqlite:///{folder / 'kfhir.db'}"
    token = migrated(url)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": FHIR}
    rows: list[tuple[str, str, str, float, float, str]] = []
    with served(["serve", "--production"], script_env(url), folder, ready="/health") as server:
        fhir = f"{server.base}/fhir"
        seed = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": observation(valueQuantity={"value": i % 200, "unit": "mm[Hg]"}),
             "request": {"method": "POST", "url": "Observation"}} for i in range(300)]}
        assert requests.post(fhir, json=seed, headers=auth, timeout=600).status_code == 200
        requests.post(f"{fhir}/$validate", json=observation(), headers=auth, timeout=60)  # the validator loaded

        for name, body in bodies().items():
            data = json.dumps(body)
            for path in ("$validate", "Observation"):
                used = cpu_s(server.proc.pid)
                with memory(server.proc.pid) as grown:
                    status, seconds, size = timed(f"{fhir}/{path}", data, auth)
                rows.append(("1 body", f"{name} ({values_in(body):,} values, {len(data) // 1024} KiB)",
                             f"POST /{path} {status}", seconds, grown["kib"] / 1024,
                             f"{size // 1024} KiB answer, {cpu_s(server.proc.pid) - used:.2f} CPU s"))
        for name, params in searches().items():
            used = cpu_s(server.proc.pid)
            with memory(server.proc.pid) as grown:
                started = time.perf_counter()
                answer = requests.post(f"{fhir}/Observation/_search", data=params,
                                       headers={"Authorization": auth["Authorization"]}, timeout=600)
                status, seconds = answer.status_code, time.perf_counter() - started
                reason = answer.text[:300]
            rows.append(("2 search", name, f"POST _search {status}", seconds, grown["kib"] / 1024,
                         f"{cpu_s(server.proc.pid) - used:.2f} CPU s " + ("" if status == 200 or "refused" in name
                                                                          else reason)))
        reader = {"Authorization": auth["Authorization"]}
        used = cpu_s(server.proc.pid)
        with memory(server.proc.pid) as grown, victim(f"{fhir}/Observation?_count=1", reader) as took:
            statuses, slowest = sign_in_burst(server.base)
        used = cpu_s(server.proc.pid) - used
        rows.append(("3 sign-in", "32 sign-ins, 16 at once, new usernames", summary(statuses), slowest,
                     grown["kib"] / 1024, f"another client's reads meanwhile: slowest {max(took):.2f} s; "
                                          f"the server used {used:.1f} CPU s"))
        with memory(server.proc.pid) as grown:
            started, answers = time.perf_counter(), []
            for _ in range(45):
                one = time.perf_counter()
                answers.append((requests.get(f"{fhir}/Patient", headers={"Authorization": "Bearer junk"},
                                             timeout=60).status_code, time.perf_counter() - one))
        rows.append(("4 bad tokens", "45 x Bearer junk", summary([a for a, _ in answers]),
                     max(t for _, t in answers), grown["kib"] / 1024, f"{time.perf_counter() - started:.1f} s in all"))

        # not an attack: the largest transaction the defaults accept, of our IG's examples, for scale
        entries = Settings.load({}, environ={}).max_bundle_entries
        bundle = json.dumps(ig_transaction(entries))
        used = cpu_s(server.proc.pid)
        with memory(server.proc.pid) as grown:
            status, seconds, size = timed(fhir, bundle, auth)
        rows.append(("(scale)", f"transaction of {entries} IG examples ({len(bundle) // 1024} KiB)", f"POST /fhir {status}",
                     seconds, grown["kib"] / 1024, f"{cpu_s(server.proc.pid) - used:.2f} CPU s"))

    print(f"{'item':<12} {'attack':<72} {'answer':<30} {'slowest':>8} {'+RSS':>8}")
    for item, attack, answer, seconds, mib, note in rows:
        print(f"{item:<12} {attack:<72} {answer:<30} {seconds:>7.2f}s {mib:>6.0f}MB {note}")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    print("workers:", os.environ.get("KFHIR_WORKERS", "default"))


def summary(statuses: list[int]) -> str:
    return ", ".join(f"{statuses.count(s)} x {s}" for s in sorted(set(statuses)))


if __name__ == "__main__":
    main()
