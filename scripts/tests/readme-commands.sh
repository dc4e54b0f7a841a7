#!/usr/bin/env bash
# The README's two commands on a fresh clone, as a newcomer runs them, timed:
#   1. ./scripts/dev.sh: until the curl line it prints answers with a
#      completion (then the stack is stopped with Ctrl-C, as a user would);
#   2. ./scripts/test.sh: the whole test command.
# Prints both durations. The clone is of this checkout's HEAD (commit first)
# into a temporary directory with its own empty ./target, so nothing built
# here is reused; the machine's caches outside the clone (crate downloads,
# the model, anvil, Debian packages) are, and the output says so.
#
#   scripts/tests/readme-commands.sh [--dev-only] [--keep]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
dev_only=0 keep=0
for a in "$@"; do
  case "$a" in
    --dev-only) dev_only=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "readme-commands: unknown option $a" >&2; exit 2 ;;
  esac
done
if curl -s -o /dev/null --max-time 1 http://127.0.0.1:8080/healthz; then
  echo "readme-commands: something already listens on 127.0.0.1:8080 (another cloister dev?)" >&2
  exit 2
fi
work="$(mktemp -d)"
dev_pid=""
cleanup() {
  [ -n "$dev_pid" ] && kill -INT "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
  [ "$keep" = 1 ] && echo "readme-commands: kept $work" || rm -rf "$work"
}
trap cleanup EXIT
git clone --quiet "$here" "$work/cloister"
cd "$work/cloister"
unset CARGO_TARGET_DIR CI
echo "readme-commands: fresh clone of $(git rev-parse --short HEAD) in $work/cloister"

start=$(date +%s)
setsid ./scripts/dev.sh > "$work/dev.out" 2> "$work/dev.err" &
dev_pid=$!
answered=0
while kill -0 "$dev_pid" 2>/dev/null; do
  if grep -q '^curl ' "$work/dev.out"; then
    # The export lines and the very curl line the stack printed, as a user
    # pastes them (in a child shell: ./scripts/test.sh below must also pass
    # from a shell that has them, which test.sh itself takes care of).
    if bash -c "$(grep '^export ' "$work/dev.out"); $(grep '^curl ' "$work/dev.out") --fail --silent --max-time 120" > "$work/curl.out" \
      && grep -q '"choices"' "$work/curl.out"; then
      answered=1
      break
    fi
  fi
  sleep 5
done
dev_secs=$(( $(date +%s) - start ))
if [ "$answered" != 1 ]; then
  tail -30 "$work/dev.err" >&2
  echo "readme-commands: ./scripts/dev.sh never answered the curl line" >&2
  exit 1
fi
echo "readme-commands: ./scripts/dev.sh answered the curl line after ${dev_secs} s"
kill -INT -- "-$dev_pid" 2>/dev/null || kill -INT "$dev_pid"
wait "$dev_pid" 2>/dev/null || true
dev_pid=""
[ "$dev_only" = 1 ] && exit 0

start=$(date +%s)
if ./scripts/test.sh > "$work/test.log" 2>&1; then status=passed; else status=FAILED; fi
test_secs=$(( $(date +%s) - start ))
echo "readme-commands: ./scripts/test.sh $status after ${test_secs} s (log: $work/test.log)"
printf '\n| command | seconds | minutes |\n|---|---:|---:|\n'
printf '| ./scripts/dev.sh (until the curl line answers) | %d | %.1f |\n' "$dev_secs" "$(awk -v s="$dev_secs" 'BEGIN{print s/60}')"
printf '| ./scripts/test.sh (after it, same clone) | %d | %.1f |\n' "$test_secs" "$(awk -v s="$test_secs" 'BEGIN{print s/60}')"
[ "$status" = passed ]
