#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: `start DIR` initialises a cluster in
# DIR as the postgres user, listening on 127.0.0.1 on a free port and on a
# unix socket in DIR (fsync off: nothing here must survive a power loss),
# and prints its conninfo (a URI whose user may create databases);
# `stop DIR` stops it and removes DIR. `pause DIR` stops the server and
# keeps its data, `resume DIR` starts it again on the same port (tests of a
# database that goes away under a running broker).
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bindir" ] || { echo "pgtest: PostgreSQL server binaries not found (scripts/deps.sh)" >&2; exit 1; }

as_pg() {
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

server_on() {
  local dir=$1 port=$2
  as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null 2>&1
}

start() {
  local dir=$1 port
  mkdir -p "$dir"
  chown postgres: "$dir" 2>/dev/null || true
  chmod 700 "$dir"
  as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  for attempt in 1 2 3; do
    port=$(free_port)
    if server_on "$dir" "$port"; then
      echo "$port" > "$dir/port"
      echo "postgresql://postgres@127.0.0.1:$port/postgres"
      return 0
    fi
  done
  cat "$dir/server.log" >&2
  exit 1
}

stop() {
  local dir=$1
  [ -d "$dir/data" ] && as_pg "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start)  start "${2:?DIR}" ;;
  stop)   stop "${2:?DIR}" ;;
  pause)  as_pg "$bindir/pg_ctl" -D "${2:?DIR}/data" -m immediate -w stop >/dev/null ;;
  resume) server_on "${2:?DIR}" "$(cat "${2:?DIR}/port")" || { cat "$2/server.log" >&2; exit 1; } ;;
  *) echo "usage: $0 start|stop|pause|resume DIR" >&2; exit 2 ;;
esac
