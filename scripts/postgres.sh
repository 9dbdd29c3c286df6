#!/usr/bin/env bash
# A PostgreSQL server for the cluster tests, from Debian's packages: initdb + pg_ctl in its own
# directory on a free loopback port, password authentication (scram-sha-256) over TCP, run as
# the postgres user when started as root.
#
#   scripts/postgres.sh start [DIR]   # prints the environment to source (idempotent)
#   scripts/postgres.sh stop [DIR]
#   scripts/postgres.sh kill [DIR]    # SIGKILL to the server and its backends (the crash test)
#   scripts/postgres.sh standby PRIMARY_DIR DIR [sync]
#                                     # a streaming standby of the server in PRIMARY_DIR, made by
#                                     # pg_basebackup on a free loopback port; with `sync` the
#                                     # primary waits for it at every commit
#                                     # (synchronous_standby_names = '*'); prints its environment
#   scripts/postgres.sh promote DIR   # the standby in DIR becomes a primary (pg_ctl promote)
#   scripts/postgres.sh pause-replication DIR | resume-replication DIR
#                                     # SIGSTOP/SIGCONT to the WAL senders of the primary in DIR:
#                                     # an asynchronous standby falls behind at will (what is
#                                     # committed meanwhile stays on the primary)
#
# The environment: SIGNET_PG_URL (postgresql://signet@127.0.0.1:PORT/postgres, no password),
# SIGNET_PG_PASSWORD_FILE, SIGNET_PG_DIR. DIR defaults to ${TMPDIR:-/tmp}/signet-postgres.
set -euo pipefail
cmd="${1:-start}"
dir="${2:-${TMPDIR:-/tmp}/signet-postgres}"
env_file="$dir/env"

bindir() {
  local d
  # The client package alone also makes /usr/lib/postgresql/N/bin: look for the server's initdb.
  d="$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 | xargs -r dirname)"
  [ -n "$d" ] || { echo "postgres.sh: no PostgreSQL server binaries" >&2; exit 1; }
  echo "$d"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  stop)
    [ -f "$dir/data/postmaster.pid" ] && as_pg "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    exit 0 ;;
  kill)
    # The postmaster and every backend at once, as a machine crash would (backends outlive a
    # killed postmaster long enough to commit).
    if [ -f "$dir/data/postmaster.pid" ]; then
      pm="$(head -1 "$dir/data/postmaster.pid")"
      kill -STOP "$pm" 2>/dev/null || true
      pkill -KILL -P "$pm" 2>/dev/null || true
      kill -KILL "$pm" 2>/dev/null || true
      # Dead once gone or a zombie (whose parent may never reap it, and whose pid would make
      # the next start think a server still runs): then the lock file can go.
      for _ in $(seq 50); do
        state="$(awk '{print $3}' "/proc/$pm/stat" 2>/dev/null || true)"
        { [ -z "$state" ] || [ "$state" = Z ]; } && break
        sleep 0.1
      done
      rm -f "$dir/data/postmaster.pid" "$dir"/.s.PGSQL.*.lock
    fi
    exit 0 ;;
  promote)
    as_pg "$(bindir)/pg_ctl" -D "$dir/data" -w promote >/dev/null
    exit 0 ;;
  pause-replication|resume-replication)
    pm="$(head -1 "$dir/data/postmaster.pid")"
    signal=STOP; [ "$cmd" = resume-replication ] && signal=CONT
    for pid in $(pgrep -P "$pm"); do
      if grep -q walsender "/proc/$pid/cmdline" 2>/dev/null; then kill "-$signal" "$pid"; fi
    done
    exit 0 ;;
  standby)
    primary="$2"; dir="$3"; mode="${4:-async}"; env_file="$dir/env"
    bin="$(bindir)"
    pport="$(cat "$primary/port")"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    rm -rf "$dir"; mkdir -p "$dir"
    install -m 600 "$primary/password" "$dir/password"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    # A .pgpass for pg_basebackup and for the standby's own primary_conninfo (-R writes it).
    pgpass="$dir/pgpass"
    echo "127.0.0.1:$pport:*:signet:$(cat "$primary/password")" > "$pgpass"
    chmod 600 "$pgpass"; [ "$(id -u)" -eq 0 ] && chown postgres "$pgpass"
    PGPASSFILE="$pgpass" as_pg env PGPASSFILE="$pgpass" "$bin/pg_basebackup" \
      -h 127.0.0.1 -p "$pport" -U signet -D "$dir/data" -R -X stream -c fast >/dev/null
    echo "passfile='$pgpass'" >> "$dir/data/postgresql.auto.conf"
    sed -i "s|primary_conninfo = '|primary_conninfo = 'passfile=$pgpass application_name=standby |" "$dir/data/postgresql.auto.conf"
    sed -i "/^passfile=/d" "$dir/data/postgresql.auto.conf"
    echo "$port" > "$dir/port"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
      start >/dev/null || { tail -5 "$dir/server.log" >&2; exit 1; }
    if [ "$mode" = sync ]; then
      PGPASSWORD="$(cat "$primary/password")" psql -qAt -h 127.0.0.1 -p "$pport" -U signet postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = '*'" -c "SELECT pg_reload_conf()" >/dev/null
      # Wait until the primary counts the standby as synchronous.
      for _ in $(seq 100); do
        state="$(PGPASSWORD="$(cat "$primary/password")" psql -qAt -h 127.0.0.1 -p "$pport" -U signet postgres \
          -c "SELECT sync_state FROM pg_stat_replication" 2>/dev/null || true)"
        [ "$state" = sync ] && break
        sleep 0.1
      done
    fi
    cat > "$env_file" <<ENV
export SIGNET_PG_URL='postgresql://signet@127.0.0.1:$port/postgres'
export SIGNET_PG_PASSWORD_FILE='$dir/password'
export SIGNET_PG_DIR='$dir'
ENV
    cat "$env_file"
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|kill|standby|promote|pause-replication|resume-replication [DIR]" >&2; exit 2 ;;
esac

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql postgresql-client >/dev/null
  # Debian's package starts its own cluster on 5432; the tests use their own.
  $SUDO pg_ctlcluster --mode fast "$(ls /usr/lib/postgresql | sort -V | tail -1)" main stop >/dev/null 2>&1 || true
fi
bin="$(bindir)"

# Running (a killed server may linger as a zombie until its parent reaps it: not running).
running() {
  local pid state
  [ -f "$dir/data/postmaster.pid" ] || return 1
  pid="$(head -1 "$dir/data/postmaster.pid")"
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [ -n "$state" ] && [ "$state" != Z ]
}
if [ -f "$env_file" ] && running; then
  cat "$env_file"; exit 0
fi

# A restart keeps the port the nodes know.
if [ -f "$dir/port" ]; then
  port="$(cat "$dir/port")"
else
  port="${SIGNET_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
  chmod 600 "$dir/password"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
    install -o postgres -m 600 "$dir/password" "$dir/pw.init"
  else
    cp "$dir/password" "$dir/pw.init"
  fi
  as_pg "$bin/initdb" -D "$dir/data" -U signet --pwfile="$dir/pw.init" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 >/dev/null
  rm -f "$dir/pw.init"
  echo "$port" > "$dir/port"
fi
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
  start >/dev/null || { tail -5 "$dir/server.log" >&2; exit 1; }
cat > "$env_file" <<ENV
export SIGNET_PG_URL='postgresql://signet@127.0.0.1:$port/postgres'
export SIGNET_PG_PASSWORD_FILE='$dir/password'
export SIGNET_PG_DIR='$dir'
ENV
cat "$env_file"
