#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for Ketch's tests, run a command against it,
# and stop the server when the command ends.
#
#   scripts/ci-postgres.sh .venv/bin/pytest -n auto   # run the tests with PostgreSQL
#   scripts/ci-postgres.sh                            # start one, print its URL, wait for Ctrl-C
#
# The server listens on 127.0.0.1 on a free port, keeps its data in a temporary
# directory and runs as the `postgres` user when started by root. Its URL is
# exported as KETCH_TEST_POSTGRES_URL. PostgreSQL is installed from Debian's
# packages when it is missing and this script may use apt-get. When PostgreSQL
# cannot be had, the command still runs, without KETCH_TEST_POSTGRES_URL, and the
# reason is printed (the PostgreSQL tests then skip). KETCH_TEST_POSTGRES=off skips
# the server on purpose; an already set KETCH_TEST_POSTGRES_URL is used as it is.
set -euo pipefail

log() { echo "ci-postgres: $*" >&2; }

COMMAND=("$@")

run_without_postgres() {
  log "PostgreSQL tests will be skipped: $*"
  if [[ ${#COMMAND[@]} -gt 0 ]]; then
    set +e
    "${COMMAND[@]}"
    exit $?
  fi
  exit 1
}

case "${KETCH_TEST_POSTGRES:-}" in
  off|0|false|no) run_without_postgres "KETCH_TEST_POSTGRES=${KETCH_TEST_POSTGRES}" ;;
esac

if [[ -n "${KETCH_TEST_POSTGRES_URL:-}" ]]; then
  log "using the server already given in KETCH_TEST_POSTGRES_URL"
  if [[ ${#COMMAND[@]} -gt 0 ]]; then exec "${COMMAND[@]}"; fi
  echo "export KETCH_TEST_POSTGRES_URL='${KETCH_TEST_POSTGRES_URL}'"
  exit 0
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

find_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return 0; fi
  done
  if command -v pg_config >/dev/null; then
    dir=$(pg_config --bindir)
    if [[ -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
  fi
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

BINDIR=$(find_bindir || true)
if [[ -z "$BINDIR" ]]; then
  if command -v apt-get >/dev/null; then
    log "PostgreSQL is not installed; installing it from Debian's packages"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
      || ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2; then
      run_without_postgres "could not install PostgreSQL with apt-get (needs root or passwordless sudo, and network)"
    fi
    BINDIR=$(find_bindir || true)
  fi
  if [[ -z "$BINDIR" ]]; then
    run_without_postgres "no PostgreSQL server binaries (initdb, pg_ctl) found and apt-get is not available"
  fi
fi

# Who runs the server: initdb refuses to run as root.
RUN_AS=()
if [[ $(id -u) -eq 0 ]]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  RUN_AS=(runuser -u postgres --)
fi

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/ketch-pg.XXXXXX")
DATA="$WORKDIR/data"
if [[ ${#RUN_AS[@]} -gt 0 ]]; then chown postgres "$WORKDIR"; fi
chmod 700 "$WORKDIR"

SLEEP_PID=""
stop_server() {
  local rc=$?
  if [[ -n "$SLEEP_PID" ]]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
  if [[ -f "$DATA/postmaster.pid" ]]; then
    "${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$WORKDIR"
  return $rc
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting PostgreSQL ($("$BINDIR/postgres" --version | awk '{print $3}')) on 127.0.0.1:$PORT in $WORKDIR"
"${RUN_AS[@]}" "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$WORKDIR/initdb.log" 2>&1 \
  || { cat "$WORKDIR/initdb.log" >&2; run_without_postgres "initdb failed"; }
"${RUN_AS[@]}" "$BINDIR/pg_ctl" -D "$DATA" -l "$WORKDIR/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $PORT -k $WORKDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null \
  || { cat "$WORKDIR/server.log" >&2; run_without_postgres "the server did not start"; }
"${RUN_AS[@]}" "$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U postgres ketch_test

export KETCH_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$PORT/ketch_test"
log "KETCH_TEST_POSTGRES_URL=$KETCH_TEST_POSTGRES_URL"

if [[ ${#COMMAND[@]} -gt 0 ]]; then
  set +e
  "${COMMAND[@]}"
  status=$?
  set -e
  exit "$status"
fi

echo "export KETCH_TEST_POSTGRES_URL='$KETCH_TEST_POSTGRES_URL'"
log "press Ctrl-C to stop the server"
while true; do
  sleep 3600 &
  SLEEP_PID=$!
  wait "$SLEEP_PID"
done
