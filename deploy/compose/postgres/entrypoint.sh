#!/bin/sh
# First start: initdb into the volume, then the role and database notarium
# uses. Every start: run postgres as the postgres user, listening on the
# compose network with password (SCRAM) authentication.
set -eu
bin=/usr/lib/postgresql/15/bin
: "${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE to a file holding the password}"
password=$(cat "$POSTGRES_PASSWORD_FILE")
[ -n "$password" ] || { echo "$POSTGRES_PASSWORD_FILE is empty" >&2; exit 1; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

install -d -m 0700 -o postgres -g postgres "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  as_postgres "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # Single-user mode: one statement per line. Quotes in the password are doubled.
  quoted=$(printf '%s' "$password" | sed "s/'/''/g")
  printf '%s\n' \
    "CREATE ROLE \"$POSTGRES_USER\" LOGIN PASSWORD '$quoted';" \
    "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" |
    as_postgres "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
  "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
