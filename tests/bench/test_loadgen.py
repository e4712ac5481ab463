"""The serving part's load generators, the Go one (bench/loadgen, built by bench/generator.py) and its fallback
bench/load.py, against a small HTTP server of the test's own: the same contract from both (what they send, what
they count as an error, one keep-alive connection per client, the JSON they print)."""
from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench import generator, openloop, serving

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"count", "errors", "seconds", "per_second", "cpu_s", "p50_ms", "p99_ms", "error_statuses"}
CLIENTS = 3


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler(seen: Seen) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as our server and HAPI answer
        wbufsize = 65536  # headers and body in one write (flushed after each request)
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int) -> None:
            body = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body: bytes | None) -> None:
            with seen.lock:
                seen.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "port": self.client_address[1], "headers": dict(self.headers)})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self._record(body)
            # every request whose number ends in 3 is refused, so the errors and their statuses can be counted
            self._answer(422 if json.loads(body)["id"].endswith("3") else 201)

        def do_GET(self) -> None:  # noqa: N802
            self._record(None)
            self._answer(200 if self.path.startswith("/fhir/found") else 404)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(seen))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def go_generator() -> list[str]:
    go = generator.go_binary()
    if go is None:
        pytest.skip("Go is not installed: the serving part falls back to bench/load.py (tested below)")
    return [str(generator.build(go))]


@pytest.fixture(params=["go", "python"])
def command(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "python":
        return generator.PYTHON
    return list(request.getfixturevalue("go_generator"))


def run(command: list[str], url: str, body: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    path = tmp_path / "body.txt"
    path.write_text(body, encoding="utf-8")
    done = subprocess.run([*command, url, str(path), "0.6", str(CLIENTS), *extra], cwd=ROOT,  # noqa: S603
                          env={"KFHIR_BENCH_TOKEN": "secret-key", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True, timeout=60)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_posts_are_counted_with_their_errors_each_body_numbered_anew(command: list[str], server: tuple[str, Seen],
                                                                     tmp_path: Path) -> None:
    url, seen = server
    result = run(command, f"{url}/MedicationAdministration", '{"id": "bench-__SEQ__"}', tmp_path, "application/json")

    assert set(result) == KEYS
    sent = seen.requests
    ids = [json.loads(r["body"])["id"] for r in sent]
    refused = sum(i.endswith("3") for i in ids)
    assert result["count"] == len(sent) > CLIENTS
    assert len(set(ids)) == len(ids)  # __SEQ__: <pid>-<client>-<n>, new in every request
    assert {i.split("-")[2] for i in ids} == {str(c) for c in range(CLIENTS)}
    assert result["errors"] == refused > 0
    assert result["error_statuses"] == {"422": refused}
    assert result["per_second"] == pytest.approx((len(sent) - refused) / result["seconds"])
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert 0 < result["cpu_s"] < 30
    assert {r["path"] for r in sent} == {"/fhir/MedicationAdministration"}
    for r in sent:
        assert r["headers"]["Authorization"] == "Bearer secret-key"
        assert r["headers"]["Prefer"] == "return=minimal"
        assert r["headers"]["Content-Type"] == "application/json"
        assert (r["headers"]["Accept"], r["headers"]["Accept-Encoding"]) == ("*/*", "gzip, deflate")
    # keep-alive: a connection per request would show one port a request; a client may redial once when its
    # connection is dropped under load (seen once in make check at load ~10: 4 ports for 3 clients)
    assert CLIENTS <= len({r["port"] for r in sent}) <= 2 * CLIENTS < len(sent)


def test_gets_go_round_the_urls_and_count_what_is_not_200(command: list[str], server: tuple[str, Seen],
                                                          tmp_path: Path) -> None:
    url, seen = server
    result = run(command, "-", f"{url}/found/1\n{url}/found/2\n{url}/missing\n", tmp_path)

    assert set(result) == KEYS
    sent = seen.requests
    missing = sum(r["path"] == "/fhir/missing" for r in sent)
    assert result["count"] == len(sent) > CLIENTS
    assert {r["path"] for r in sent} == {"/fhir/found/1", "/fhir/found/2", "/fhir/missing"}
    assert result["errors"] == missing > 0
    assert result["error_statuses"] == {"404": missing}
    assert all(r["method"] == "GET" and r["headers"]["Content-Type"] == "application/fhir+json" for r in sent)
    assert CLIENTS <= len({r["port"] for r in sent}) <= 2 * CLIENTS < len(sent)  # keep-alive, as above


def test_a_server_that_is_not_there_is_an_error_not_a_crash(command: list[str], tmp_path: Path) -> None:
    with http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    result = run(command, "-", f"http://127.0.0.1:{port}/fhir/x", tmp_path)

    assert set(result) == KEYS
    assert result["count"] == result["errors"] > 0
    assert result["per_second"] == 0
    assert set(result["error_statuses"]) == {"ConnectionError"}


def test_the_binary_is_built_once_and_anew_when_its_source_changes(go_generator: list[str], tmp_path: Path) -> None:
    go = generator.go_binary()
    assert go is not None
    source = tmp_path / "loadgen"
    shutil.copytree(generator.SOURCE, source, ignore=shutil.ignore_patterns("target"))
    first = generator.build(go, source / "target", source)
    built_at = first.stat().st_mtime_ns

    assert generator.build(go, source / "target", source) == first
    assert first.stat().st_mtime_ns == built_at
    (source / "main.go").write_text((source / "main.go").read_text() + "\n// changed\n")
    second = generator.build(go, source / "target", source)
    assert second != first and second.is_file()


def test_without_go_the_run_falls_back_to_load_py_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "go_binary", lambda: None)
    chosen = generator.choose("go")

    assert chosen.kind == "python" and chosen.command == generator.PYTHON
    assert "go is not installed" in chosen.says
    result = {"date": "2026-12-05T13:00:00+00:00", "load": "load average 1.00", "clients": 8, "seconds": 5,
              "generator_says": chosen.says, "contenders": []}
    assert f"Load generator: {chosen.says}." in serving.table(result)


def test_the_go_generator_is_chosen_when_go_is_there(go_generator: list[str]) -> None:
    chosen = generator.choose("go")

    assert chosen.kind == "go" and chosen.command == go_generator
    assert generator.choose("python").kind == "python"


OPEN_KEYS = KEYS | {"mode", "rate", "scheduled", "sent", "not_sent", "waited_for_connection", "connections",
                    "peak_in_flight", "dialed", "censored", "gave_up_s", "max_ms", "p50_first_ms", "p50_last_ms",
                    "lower_bounds", "send_lag_p99_ms", "send_lag_max_ms"}


def test_the_open_loop_goes_through_serving_load_at_its_rate(go_generator: list[str], server: tuple[str, Seen]) -> None:
    """serving.load with a rate runs the Go generator's open loop (-rate, bench/loadgen/open.go): the schedule's
    requests, each body numbered anew, a second of the schedule allowed in flight."""
    url, seen = server
    args = argparse.Namespace(generator=generator.Generator(go_generator, "go", "Go"), clients=CLIENTS)
    result = serving.load(f"{url}/MedicationAdministration", {"id": "bench-__SEQ__"}, 0.5, args, "secret-key",
                          "application/json", rate=40.0)

    assert set(result) == OPEN_KEYS | {"load_cpu_share"} and OPEN_KEYS == openloop.KEYS
    assert result["censored"] == 0 and result["lower_bounds"] == [] and result["gave_up_s"] is None
    assert (result["mode"], result["rate"], result["scheduled"]) == ("open", 40.0, 20)
    assert result["connections"] == openloop.connections(40.0)
    assert result["sent"] == result["count"] == len(seen.requests) == 20 and result["not_sent"] == 0
    ids = [json.loads(r["body"])["id"] for r in seen.requests]
    assert sorted(ids, key=lambda i: int(i.split("-")[-1])) == [f"bench-{ids[0].split('-')[1]}-o-{k}" for k in range(20)]
    refused = sum(i.endswith("3") for i in ids)
    assert result["errors"] == refused == 2 and result["error_statuses"] == {"422": 2}
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert all(r["headers"]["Authorization"] == "Bearer secret-key" for r in seen.requests)


def test_the_python_generator_says_it_has_no_open_loop() -> None:
    args = argparse.Namespace(generator=generator.python("chosen"), clients=CLIENTS)
    assert "needs the Go generator" in serving.load("http://127.0.0.1:9/x", {}, 1, args, None, rate=10.0)["error"]


def test_the_go_generators_own_tests_pass(go_generator: list[str]) -> None:
    """bench/loadgen/open_test.go: the schedule is kept, and latency counts from the intended send time against a
    deliberately slow server (with one connection, a server at half the rate leaves requests unsent and late)."""
    go = generator.go_binary()
    assert go is not None
    env = dict(os.environ) | {"GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GOWORK": "off",
                              "CGO_ENABLED": "0"}
    if not {"GOCACHE", "HOME", "XDG_CACHE_HOME"} & set(env):  # as generator.build: Go needs a build cache
        env["GOCACHE"] = str(generator.TARGET / "gocache")
    done = subprocess.run([go, "test", "-count=1", "-timeout=300s", "."], cwd=generator.SOURCE, env=env,  # noqa: S603
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_go_generator_refuses_a_rate_of_zero(go_generator: list[str], tmp_path: Path) -> None:
    """-rate 0 once ran a closed loop, silently: a rate given must be a rate."""
    body = tmp_path / "body.json"
    body.write_text("{}", encoding="utf-8")
    done = subprocess.run([*go_generator, "-rate", "0", "http://127.0.0.1:9/x", str(body), "0.1", "1"],  # noqa: S603
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2 and "-rate 0" in done.stderr and done.stdout == ""
