#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests (the router's ledger tests use it
# through CLOISTER_TEST_POSTGRES_URL).
#
#   scripts/postgres.sh start DIR [PORT]   start a cluster in DIR (created when
#                                          missing) on PORT (default: a free
#                                          port) and print
#                                          CLOISTER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR           stop it
#
# Installs Debian's `postgresql` package when no PostgreSQL binaries are found.
# Idempotent: starting a running cluster prints its URL again; stopping a
# stopped one does nothing. Quiet on success except for the URL line.
# The cluster trusts every local connection and runs without fsync: tests only.
#
# Example:
#   export "$(scripts/postgres.sh start /tmp/cloister-pg)"
#   cargo nextest run -p cloister-router --test ledger
#   scripts/postgres.sh stop /tmp/cloister-pg
set -euo pipefail

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The directory holding initdb and pg_ctl: Debian's newest version, else PATH.
find_bindir() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
    | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
    echo "$dir"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
  fi
}

ensure_installed() {
  BINDIR=$(find_bindir)
  if [ -z "$BINDIR" ]; then
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -qq postgresql >/dev/null 2>&1 \
      || { as_root apt-get update -qq >/dev/null \
        && as_root apt-get install -y -qq postgresql >/dev/null; } \
      || die "could not install the postgresql package"
    BINDIR=$(find_bindir)
    [ -n "$BINDIR" ] || die "postgresql installed, but initdb and pg_ctl not found"
  fi
}

# Runs a command as the cluster's owner: `postgres` when we are root (initdb
# and pg_ctl refuse root), else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local port tries=0
  while [ "$tries" -lt 200 ]; do
    port=$((20000 + RANDOM % 40000))
    if ! port_in_use "$port"; then
      echo "$port"
      return
    fi
    tries=$((tries + 1))
  done
  die "no free port found"
}

running() {
  [ -f "$1/data/PG_VERSION" ] && as_owner "$BINDIR/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

print_url() {
  echo "CLOISTER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$1/postgres"
}

start() {
  local dir=$1 port=${2:-}
  ensure_installed
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user (is the postgresql package installed?)"
    chown postgres: "$dir"
    runuser -u postgres -- test -w "$dir" \
      || die "user postgres cannot write $dir (choose a directory under /tmp)"
  fi
  # The socket, $dir/.s.PGSQL.PORT, must fit in 107 bytes.
  [ "${#dir}" -le 80 ] || die "$dir is too long for a Unix socket path"

  if running "$dir"; then
    print_url "$(cat "$dir/port")"
    return
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir/data"
    as_owner "$BINDIR/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$dir/data" \
      >"$dir/initdb.log" 2>&1 || die "initdb failed, see $dir/initdb.log"
  fi
  if [ -z "$port" ]; then
    port=$(cat "$dir/port" 2>/dev/null || true)
    if [ -z "$port" ] || port_in_use "$port"; then port=$(free_port); fi
  elif port_in_use "$port"; then
    die "port $port is in use"
  fi
  echo "$port" >"$dir/port"
  local options="-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300"
  options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o "$options" start \
    >/dev/null || { tail -n 20 "$dir/log" >&2; die "pg_ctl start failed (its log above)"; }
  local i=0
  until "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || die "the server does not accept connections, see $dir/log"
    sleep 0.5
  done
  print_url "$port"
}

stop() {
  local dir=$1
  [ -f "$dir/data/PG_VERSION" ] || return 0
  ensure_installed
  if running "$dir"; then
    as_owner "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null \
      || die "pg_ctl stop failed, see $dir/log"
  fi
}

case "${1:-}" in
  start)
    [ $# -ge 2 ] && [ $# -le 3 ] || usage
    start "$2" "${3:-}"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
  *) usage ;;
esac
