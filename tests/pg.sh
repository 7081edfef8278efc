#!/usr/bin/env bash
# Runs COMMAND... against a throw-away PostgreSQL cluster and removes it afterwards.
#
#   tests/pg.sh .venv/bin/pytest -q          # the suite on PostgreSQL
#   tests/pg.sh .venv/bin/python bench/phones.py --workers 2
#
# The cluster lives in a new folder under /tmp, listens only on a Unix socket
# there (no port to collide with another run or a real server), trusts local
# connections and runs with fsync off: it holds nothing worth keeping. COMMAND
# sees:
#   KEYPARTY_TEST_POSTGRES_URL  the cluster's "keyparty" database; the test
#                               suite makes one schema per test inside it
#   KEYPARTY_DATABASE_URL       the same, for a command that just wants a database
# The cluster is stopped and its folder removed however COMMAND ends; the exit
# code is COMMAND's.
#
# A script rather than a pytest fixture: the same cluster serves the benches
# (bench/phones.py, bench/big_event.py) and any manual run, and the cleanup
# holds even when pytest itself is killed.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "tests/pg.sh: PostgreSQL's server is not installed. Install it with: sudo apt-get install postgresql" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/kppg.XXXXXX)
# initdb refuses to run as root: as root, run the server as a system user.
as=()
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  id "$owner" >/dev/null 2>&1 || owner=nobody
  chown "$owner" "$dir"
  as=(runuser -u "$owner" --)
fi

stop() {
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

"${as[@]}" "$bindir/initdb" -D "$dir/data" -U keyparty --auth=trust -E UTF8 --locale=C.UTF-8 \
  >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start -o \
  "-c listen_addresses='' -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
"$bindir/psql" -q -h "$dir" -U keyparty -d postgres -c "CREATE DATABASE keyparty" >/dev/null

export KEYPARTY_TEST_POSTGRES_URL="postgresql+psycopg://keyparty@/keyparty?host=$dir"
export KEYPARTY_DATABASE_URL="$KEYPARTY_TEST_POSTGRES_URL"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on $dir" >&2
status=0
"$@" || status=$?
exit "$status"
