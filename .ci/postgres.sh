# Start a throw-away PostgreSQL server from Debian's packages, for the test suite.
# Source this file, then: start_postgres (sets POSTGRES_URL), stop_postgres.

PG_PORT="${PG_PORT:-54329}"

_pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

_as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  if [ -z "$(_pg_bin)" ]; then
    echo "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
  fi
  local bin
  bin="$(_pg_bin)"
  PG_DIR="$(mktemp -d /tmp/zaphook-pg.XXXXXX)"
  if [ "$(id -u)" = "0" ]; then
    chown postgres:postgres "$PG_DIR"
  fi
  _as_postgres "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  _as_postgres "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >/dev/null
  _as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres zaphook_test
  export PG_DIR PG_BIN="$bin"
  export POSTGRES_URL="postgresql://postgres@127.0.0.1:$PG_PORT/zaphook_test"
  echo "PostgreSQL running at $POSTGRES_URL"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    _as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
