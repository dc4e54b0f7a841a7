#!/usr/bin/env bash
# Acceptance against a real `cloister dev` stack (router + simulated-TEE
# enclave on SmolLM2-135M): the official `openai` Python package, unmodified
# (scripts/tests/openai_sdk.py), first through `cloister proxy` (sealed end
# to end, the user's own policy, a local receipt log), then against the
# router's plain endpoint; then the status page in headless Chromium
# (Debian's `chromium`), which must list the dev node; a screenshot goes to
# $CLOISTER_SCREENSHOT when set. Installs the openai package (PyPI, into
# ~/.cache/cloister/pydeps) and chromium (Debian) when missing.
#
#   scripts/tests/openai-sdk.sh PATH/TO/cloister
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: $0 PATH/TO/cloister}

pydeps="${CLOISTER_PYDEPS:-$HOME/.cache/cloister/pydeps}"
if ! PYTHONPATH="$pydeps" python3 -c 'import openai' 2>/dev/null; then
  echo "openai-sdk: installing the openai package (PyPI) into $pydeps"
  python3 -m pip install --quiet --disable-pip-version-check --target "$pydeps" 'openai==3.57.0' 2>&1 \
    | grep -v -e 'dependency resolver' -e 'requires pydantic' -e 'Running pip as' || true
fi
if ! command -v chromium >/dev/null; then
  echo "openai-sdk: installing chromium (Debian)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" dev --port "$port" --data-dir "$work/data" --requests-per-minute 30 >"$work/out" 2>"$work/log" &
pid=$!
proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill -INT "$proxy_pid" 2>/dev/null || true
  kill -INT "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  grep -q '^export OPENAI_API_KEY=' "$work/out" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; echo "openai-sdk: cloister dev died" >&2; exit 1; }
  sleep 0.5
done
grep -q '^export OPENAI_API_KEY=' "$work/out" || { cat "$work/log"; echo "openai-sdk: cloister dev not ready" >&2; exit 1; }
eval "$(grep '^export ' "$work/out")"
export CLOISTER_MODEL=SmolLM2-135M-Instruct

# Through `cloister proxy`, as `cloister dev` prints it but with each
# request's own key (no --api-key): the SDK does not know the difference.
grep -q '^cloister proxy --router ' "$work/out" || { echo "FAIL: cloister dev prints no proxy line"; exit 1; }
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The receipts' domain as cloister dev printed it (its chain, when it runs one).
domain_flags=$(grep '^cloister proxy --router ' "$work/out" | grep -o -- '--chain-id [0-9]* --settlement-contract 0x[0-9a-fA-F]*' || true)
# shellcheck disable=SC2086
"$bin" proxy --router "http://127.0.0.1:$port" --listen "127.0.0.1:$pport" \
  --policy "$work/data/dev-policy.toml" --payer-key "$work/data/dev-payer-key" \
  --receipts "$work/receipts.jsonl" $domain_flags >"$work/proxy.out" 2>"$work/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 100); do
  grep -q '^export OPENAI_BASE_URL=' "$work/proxy.out" && break
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log"; echo "openai-sdk: cloister proxy died" >&2; exit 1; }
  sleep 0.2
done
echo "-- the openai SDK through cloister proxy"
OPENAI_BASE_URL="http://127.0.0.1:$pport/v1" CLOISTER_SKIP_RATE_LIMIT=1 \
  PYTHONPATH="$pydeps" python3 scripts/tests/openai_sdk.py
receipts=$(wc -l <"$work/receipts.jsonl")
[ "$receipts" -ge 4 ] || { echo "FAIL: the proxy logged $receipts receipts, expected 4 (chat and completions, streamed or not)"; exit 1; }
echo "ok: the proxy logged $receipts verified receipts"
grep -i -q 'say hello\|count to three\|once upon a time' "$work/proxy.log" "$work/receipts.jsonl" \
  && { echo "FAIL: prompt text in the proxy's logs or receipt log"; exit 1; }

echo "-- the openai SDK against the router's plain endpoint"
PYTHONPATH="$pydeps" python3 scripts/tests/openai_sdk.py

if [ -n "${CLOISTER_RPC_URL:-}" ]; then
  echo "-- settlement on the dev chain, checked by cloister audit chain"
  batches="http://127.0.0.1:$port/v1/audit/batches"
  for _ in $(seq 1 300); do
    python3 -c 'import json,sys,urllib.request; d=json.load(urllib.request.urlopen(sys.argv[1]))["data"]; sys.exit(0 if any(b["state"] in ("confirmed","finalized") for b in d) else 1)' "$batches" && break
    sleep 0.2
  done
  "$bin" audit chain --rpc "$CLOISTER_RPC_URL" --router "http://127.0.0.1:$port" >"$work/audit" \
    || { cat "$work/audit" "$work/log"; echo "FAIL: cloister audit chain"; exit 1; }
  grep -q '^CONSISTENT: [0-9]* batch(es), [1-9]' "$work/audit" || { cat "$work/audit"; echo "FAIL: no batch settled on the dev chain"; exit 1; }
  echo "ok: $(grep '^CONSISTENT' "$work/audit")"
else
  echo "note: cloister dev ran without a chain (anvil not installed): settlement not checked"
fi

# Status page in headless Chromium: the page loads and lists the dev node.
page="http://127.0.0.1:$port/"
chrome=(chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run)
dom=$("${chrome[@]}" --dump-dom "$page" 2>/dev/null)
echo "$dom" | grep -q '<table id="nodes"' || { echo "FAIL: status page has no node table"; exit 1; }
echo "$dom" | grep -q 'class="node serving"' || { echo "FAIL: status page lists no serving node"; echo "$dom"; exit 1; }
echo "$dom" | grep -q 'SmolLM2-135M-Instruct' || { echo "FAIL: status page does not name the dev model"; exit 1; }
echo "ok: status page in headless Chromium lists the serving dev node"
if [ -n "${CLOISTER_SCREENSHOT:-}" ]; then
  "${chrome[@]}" --window-size=1400,700 --screenshot="$CLOISTER_SCREENSHOT" "$page" 2>/dev/null
  echo "screenshot: $CLOISTER_SCREENSHOT"
fi
grep -i -q 'say hello\|count to three\|once upon a time' "$work/log" && { echo "FAIL: prompt text in the logs"; exit 1; }
echo "ok: no prompt text in the stack's logs"
