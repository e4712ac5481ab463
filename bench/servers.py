"""The servers bench/serving.py loads, each configured as its users would run it for this load, and the line
that says how (printed beside its figures).

* ours: `ketamine-fhir serve --production` (gunicorn, 2 workers × 4 threads) on a SQLite file (WAL, synchronous=FULL:
  every commit fsynced) or on PostgreSQL; its log goes to server.log in its folder;
* PostgreSQL: a server of our own for the run, with PostgreSQL's defaults (fsync on, synchronous_commit on;
  scripts/postgres.sh turns fsync off for the tests, which would flatter us) but for PG_SETTINGS;
* HAPI FHIR 8.8.0 JPA (the tests' peer, tests/peers/hapi/server): C1 and C2 (the test settings stop at C1),
  G1 with a fixed 2 GB heap (the test settings: SerialGC, 768 MB), a durable H2 file instead of the tests'
  in-memory H2, our IG installed and request validation on, as in the tests."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
HAPI_JAVA_OPTS = ("-XX:TieredStopAtLevel=4", "-XX:-UseSerialGC", "-XX:+UseG1GC", "-Xms2g", "-Xmx2g",
                  "-XX:ReservedCodeCacheSize=240m", "-XX:MaxMetaspaceSize=512m")


# What a deployment that accepts 1,000-entry transactions sets: the default (300 entries) refuses the benchmark's
# Bundle with 413 before reading it; the JSON limits of a Bundle grow with it (service/config.py VALUES_PER_ENTRY),
# so this one setting is the whole change (tests/bench/test_serving_limits.py).
TRANSACTION_1000 = {"KFHIR_MAX_BUNDLE_ENTRIES": "1000"}
#: requests each of our worker processes serves at once: the service's default (KFHIR_THREADS), said outright
THREADS = 4


@dataclass
class Server:
    name: str
    base: str  # the FHIR base, http://127.0.0.1:PORT/fhir
    token: str | None
    config: str
    ours: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base: str, process: subprocess.Popen[bytes] | None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if requests.get(f"{base}/metadata", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base} did not answer /metadata within {timeout} s")


def api_key(env: dict[str, str]) -> str | None:
    """A bearer key with every scope the load needs, or None when this version of the service has no API
    clients yet (then /fhir and /api/v1 are open)."""
    command = [str(Path(sys.executable).parent / "ketamine-fhir"), "clients", "add", "bench",
               "--scopes", "system/*.cruds system/ketamine-records.cruds"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0 and "No such command" in done.stderr:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"ketamine-fhir clients add: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def ours(workers: int, folder: Path, database_url: str | None, name: str) -> Iterator[Server]:
    """Our service under gunicorn on `database_url` (a SQLite file in `folder` when None)."""
    url = database_url or f"sqlite:///{folder / 'bench.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFHIR_")} | {
        "KFHIR_DATABASE_URL": url, "KFHIR_LOG_LEVEL": "WARNING", **TRANSACTION_1000}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "ketamine-fhir"), "db", "upgrade"], env=env, check=True,  # noqa: S603
                   capture_output=True)
    token = api_key(env)
    # An EHR endpoint, so that each clinic record is queued as in a clinic; no worker runs, so nothing is sent
    # (port 9, discard, is never served here).
    subprocess.run([str(bin_dir / "ketamine-fhir"), "endpoints", "add", "ehr", "--base-url",  # noqa: S603
                    "http://127.0.0.1:9/fhir"], env=env, check=True, capture_output=True)
    port = free_port()
    # As README's "Running in production" says to run it; a 1,000-entry transaction on a loaded machine may take
    # longer than the default 60 s a worker gets before gunicorn replaces it.
    env |= {"KFHIR_HOST": "127.0.0.1", "KFHIR_PORT": str(port), "KFHIR_WORKERS": str(workers),
            "KFHIR_THREADS": str(THREADS), "KFHIR_REQUEST_TIMEOUT": "300"}
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([str(bin_dir / "ketamine-fhir"), "serve", "--production"], env=env,  # noqa: S603
                               cwd=folder, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            wait_ready(base, process)
        except RuntimeError as exc:
            tail = (folder / "server.log").read_text(encoding="utf-8", errors="replace")[-500:]
            raise RuntimeError(f"{exc}: {tail}") from exc
        found = _pg_bin() if database_url else None
        changed = "".join(f", {k}={v}" for k, v in (pg_settings(found) if found else {}).items())
        store = (f"PostgreSQL (defaults: fsync on, synchronous_commit on{changed})" if database_url
                 else "SQLite file (WAL, synchronous=FULL)")
        limits = ", ".join(f"{k}={v}" for k, v in TRANSACTION_1000.items())
        yield Server(name, base, token, f"ketamine-fhir serve --production (gunicorn, {workers} workers × {THREADS} "
                                        f"threads, gthread, each new connection to the worker holding fewest); "
                                        f"{store}; one EHR endpoint (records queued, no worker sending); "
                                        f"every write validated, with its Provenance in the same transaction (one "
                                        f"per write) and its audit event in the same transaction; {limits}", True)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


#: PostgreSQL's settings for the run beyond its defaults, each one a production server would set too (fsync and
#: synchronous_commit stay on: a commit is durable before it is answered). A resource's JSON text over ~2 kB is
#: compressed where it is stored (TOAST): lz4 (PostgreSQL 14+) costs less CPU than the default pglz for about the same
#: size; a clinic record's PostgreSQL CPU 4.96 -> 4.58 and 5.67 -> 5.00 ms (in one process, alternated blocks:
#: /work/notes/pg-tools/inproc.py lz4). Only where the server was built with lz4 (Debian's and PGDG's packages are).
PG_SETTINGS = {"default_toast_compression": "lz4"}


def pg_settings(bin_dir: Path) -> dict[str, str]:
    """PG_SETTINGS that the server in `bin_dir` can take (lz4 only if it was built with it)."""
    try:
        built = subprocess.run([str(bin_dir / "pg_config"), "--configure"], capture_output=True,  # noqa: S603
                               text=True, check=False).stdout
    except OSError:  # no pg_config beside this pg_ctl (one found on PATH, say): not known to have lz4
        built = ""
    return {k: v for k, v in PG_SETTINGS.items() if v != "lz4" or "--with-lz4" in built}


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    on_path = shutil.which("pg_ctl")
    return found[-1].parent if found else Path(on_path).parent if on_path else None


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """A PostgreSQL server of our own on loopback with its defaults (durable) but for pg_settings; yields its URL."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL (pg_ctl) on this machine; scripts/postgres.sh installs it")
    root = os.geteuid() == 0
    as_owner = ["runuser", "-u", "postgres", "--"] if root else []
    data = folder / "pg"
    data.mkdir()
    if root:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    settings = "".join(f" -c {name}={value}" for name, value in pg_settings(bin_dir).items())
    quiet = {"capture_output": True, "check": True, "timeout": 120}
    subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-U", "kfhir", "--auth=trust",  # noqa: S603
                    "-E", "UTF8"], **quiet)  # type: ignore[call-overload]
    subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),  # noqa: S603
                    "-w", "-t", "60", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1{settings}", "start"],
                   **quiet)  # type: ignore[call-overload]
    try:
        subprocess.run([*as_owner, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",  # noqa: S603
                        "kfhir", "bench"], **quiet)  # type: ignore[call-overload]
        yield f"postgresql://kfhir@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],  # noqa: S603
                       capture_output=True, check=False, timeout=60)


@contextlib.contextmanager
def ours_on_postgres(workers: int, folder: Path) -> Iterator[Server]:
    with postgres(folder) as url:
        (folder / "pg-app").mkdir()
        with ours(workers, folder / "pg-app", url, "ours, PostgreSQL") as server:
            yield server


def _is_hapi(base: str) -> bool:
    """Whether {base}/metadata is HAPI's: on a shared machine another process may take the port while HAPI still
    starts (minutes under load), and answer /metadata in its place."""
    metadata = requests.get(f"{base}/metadata", timeout=30).json()
    software, implementation = metadata.get("software", {}), metadata.get("implementation", {})
    return "HAPI" in f"{software.get('name')} {implementation.get('description')}"


@contextlib.contextmanager
def hapi(folder: Path) -> Iterator[Server]:
    """The tests' HAPI FHIR JPA peer with our IG, configured for load (HAPI_JAVA_OPTS, a durable H2 file)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from peers.hapi_server import HapiServer, build_ig_package  # type: ignore[import-not-found]  # noqa: PLC0415

    package = build_ig_package(folder / "ig")
    for attempt in (1, 2):
        h2 = f"jdbc:h2:file:{folder / f'hapi-h2-{attempt}'}"
        opts = [*HAPI_JAVA_OPTS, f"-Dkfhir.h2-url={h2}"]  # system properties reach Spring's @Value
        # 600 s: on this shared machine under load its start (installing our IG into the H2 file) took over 240 s.
        with HapiServer.start(package, extra_java_opts=opts, timeout=600) as peer:
            if not _is_hapi(peer.base_url):
                if attempt == 1:
                    continue
                raise RuntimeError(f"{peer.base_url} was answered by another server, twice (the port was taken "
                                   f"while HAPI started)")
            config = (f"JPA, H2 file (durable: each commit written to the file), request validation against R4 "
                      f"and our IG, search cache off; JVM {' '.join(HAPI_JAVA_OPTS)} (after the tests' options, "
                      f"which these override); started in {peer.startup_seconds:.0f} s")
            yield Server("HAPI FHIR 8.8.0 JPA", peer.base_url, None, config, False)
            return
