#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests: `start` prints the URL as a shell
# assignment (eval it), `stop` stops it and deletes its data. Installs PostgreSQL from Debian's
# packages if the machine has none. Runs the server as the `postgres` user when started as root.
set -euo pipefail
state="${KFHIR_PG_DIR:-/tmp/kfhir-test-pg}"

bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian packages" >&2
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    else sudo apt-get update -qq >&2 && sudo apt-get install -y -qq postgresql >&2; fi
    d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$d"
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin port
  bin=$(bin_dir)
  stop >/dev/null 2>&1 || true
  mkdir -p "$state"
  [ "$(id -u)" -eq 0 ] && chown postgres "$state"
  port=$(free_port)
  as_owner "$bin/initdb" -D "$state/data" -U kfhir --auth=trust -E UTF8 >"$state/initdb.log" 2>&1 \
    || { cat "$state/initdb.log" >&2; exit 1; }
  # fsync off: a test database is thrown away, durability there only costs time.
  as_owner "$bin/pg_ctl" -D "$state/data" -l "$state/data/server.log" -w -t 60 \
    -o "-p $port -k $state -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >&2
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U kfhir kfhir_test
  echo "$bin" >"$state/bin"
  echo "export KFHIR_TEST_POSTGRES_URL=postgresql://kfhir@127.0.0.1:$port/kfhir_test"
}

stop() {
  [ -f "$state/bin" ] || { rm -rf "$state"; return 0; }
  as_owner "$(cat "$state/bin")/pg_ctl" -D "$state/data" -m fast -w stop >&2 || true
  rm -rf "$state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
