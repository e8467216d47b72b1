#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests (CTest fixture "pg").
#   tests/tools/pg_fixture.sh start DIR   initdb in DIR, start it on a Unix socket in DIR
#                                          (no TCP port), create database "rookery",
#                                          write its URI to DIR/dsn
#   tests/tools/pg_fixture.sh stop DIR    stop it and remove DIR
# Debian's `postgresql` package (scripts/setup.sh) provides the server. PostgreSQL
# refuses to run as root, so as root the server runs as the package's `postgres` user.
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?directory}"
port=5433 # names the socket file only (listen_addresses is empty)
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
[ -x "$bindir/initdb" ] || { echo "pg_fixture: no PostgreSQL server (install Debian's postgresql: scripts/setup.sh)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

case "$cmd" in
  start)
    stop
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_pg "$bindir/initdb" -D "$dir/data" -U rookery --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # Tests only: no fsync; enough connections for several gateways and test stores.
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -c listen_addresses= -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_pg "$bindir/createdb" -h "$dir" -p "$port" -U rookery rookery
    echo "postgresql:///rookery?host=$dir&port=$port&user=rookery" >"$dir/dsn"
    echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $dir (socket), $(cat "$dir/dsn")"
    ;;
  stop)
    stop
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
