#!/usr/bin/env bash
# Static checks of the router's systemd files (deploy/systemd/):
#  - `systemd-analyze verify` of cloister-router.service, alone and with
#    the cloister-router-settlement.conf drop-in, in a throwaway root
#    (--root) that holds the system's own unit files and an executable at
#    the ExecStart path, so the real check (ExecStart must exist and be
#    executable) stays on; any warning (unknown key, bad value) fails the
#    test, and so must a root without the binary (proves the check is live);
#  - `systemd-analyze security --offline` exposure at most 2.0;
#  - the sysusers.d file parses and creates the unit's user;
#  - with a cloister binary as $1: every CLOISTER_*/DATABASE_URL variable the
#    unit, the drop-in and the example env file set is one `cloister router
#    --help` lists (without $1 that part is skipped, with a message).
# Needs systemd (Debian package `systemd`, for systemd-analyze and
# systemd-sysusers); installs nothing.
#
#   scripts/tests/deploy-router-unit.sh [PATH/TO/cloister]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
dir=deploy/systemd
unit=cloister-router.service
failures=0
passed=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }

command -v systemd-analyze >/dev/null || { echo "deploy-router-unit: systemd-analyze missing (Debian package systemd)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$dir/$unit")
[ -n "$exec_path" ] || { echo "FAIL: no ExecStart in $dir/$unit"; exit 1; }

# make_root NAME WITH_BINARY WITH_DROPIN: a root with the system's units
# (sysinit.target etc. must resolve) and ours installed where the guide says.
make_root() {
  local root="$work/$1"
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/etc/sysusers.d"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  install -m 0644 "$dir/$unit" "$root/etc/systemd/system/$unit"
  install -m 0644 "$dir/cloister-router.sysusers" "$root/etc/sysusers.d/cloister-router.conf"
  if [ "$2" = yes ]; then
    mkdir -p "$root$(dirname "$exec_path")"
    if [ -n "$bin" ]; then
      cp "$bin" "$root$exec_path"
    else
      # Any executable file: verify checks the path, not what it runs.
      printf '#!/bin/sh\nexit 0\n' >"$root$exec_path"
    fi
    chmod 0755 "$root$exec_path"
  fi
  if [ "$3" = yes ]; then
    install -D -m 0644 "$dir/cloister-router-settlement.conf" \
      "$root/etc/systemd/system/$unit.d/cloister-router-settlement.conf"
  fi
  echo "$root"
}

# verify ROOT: succeeds only when systemd-analyze says nothing at all.
verify() {
  local out
  out=$(systemd-analyze verify --man=no --root="$1" "$unit" 2>&1) && [ -z "$out" ] && return 0
  printf '%s\n' "$out" | sed 's/^/    /'
  return 1
}

root=$(make_root plain yes no)
if verify "$root"; then ok "systemd-analyze verify $unit"; else fail "systemd-analyze verify $unit"; fi

root_dropin=$(make_root dropin yes yes)
if verify "$root_dropin"; then ok "systemd-analyze verify $unit + cloister-router-settlement.conf"; else fail "systemd-analyze verify with cloister-router-settlement.conf"; fi

if verify "$(make_root nobinary no no)" >/dev/null; then
  fail "verify passed without $exec_path: the ExecStart check is not live"
else
  ok "verify refuses a root without $exec_path"
fi

if systemd-analyze security --offline=yes --threshold=20 --root="$root_dropin" "$unit" >"$work/security" 2>&1; then
  ok "$(tail -n 1 "$work/security" | sed 's/^→ //')"
else
  grep -e '✗' -e 'Overall' "$work/security" | sed 's/^/    /'
  fail "systemd-analyze security: exposure above 2.0"
fi

# systemd-sysusers reports on stderr and exits 0 even on a bad line: every
# line it says must be one of its plain dry-run reports.
user=$(sed -n 's/^User=//p' "$dir/$unit")
out=$(systemd-sysusers --root="$root" --dry-run 2>&1 || echo "exit status $?")
if grep -v -e '^Creating \(user\|group\) ' -e '^Would write ' <<<"$out" | grep -q .; then
  printf '%s\n' "$out" | sed 's/^/    /'
  fail "cloister-router.sysusers does not parse cleanly"
elif grep -q "^Creating user '$user'" <<<"$out"; then
  ok "sysusers.d creates $user"
else
  fail "cloister-router.sysusers does not create the unit's User=$user"
fi

# Settings the router must know: a misspelt variable would be ignored silently.
vars=$( { sed -n 's/^Environment=\([A-Z_]*\)=.*/\1/p' "$dir/$unit" "$dir/cloister-router-settlement.conf"
          sed -n 's/^#\{0,1\}\([A-Z][A-Z_]*\)=.*/\1/p' "$dir/cloister-router.env.example"; } | sort -u)
if [ -n "$bin" ]; then
  help=$("$bin" router --help)
  for v in $vars; do
    if grep -q "env: ${v}[]=]" <<<"$help"; then ok "$v is a router setting"; else fail "$v is not in \`cloister router --help\`"; fi
  done
else
  echo "skip: no cloister binary given; not checking variable names: $(tr "\n" " " <<<"$vars")"
fi

echo "deploy-router-unit: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
