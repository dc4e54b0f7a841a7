#!/usr/bin/env bash
# Starts the local stack:
#   1. builds `cloister` and verifies the recorded hardware evidence of every
#      platform (the auditor's offline verifier);
#   2. starts `cloister enclave` on SmolLM2-135M with the simulated TEE
#      (development only), fetches its evidence bundle and verifies it under
#      a policy that allows simulated evidence;
#   3. keeps the enclave running (Ctrl-C stops it; requests in flight finish).
# The router joins here when it lands.
#
#   scripts/dev.sh [--listen ADDR] [--no-enclave]
set -euo pipefail
cd "$(dirname "$0")/.."

listen=127.0.0.1:7070 enclave=1
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --no-enclave) enclave=0; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
cargo build --locked -p cloister-cli
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/cloister"
T=attestation/testdata

run() {
  printf '\n$ cloister %s\n' "$*"
  "$bin" "$@" || printf '(exit status %s)\n' "$?"
}

run verify tdx "$T/tdx/v5-uptodate-90c06f-gotdxguest/quote.bin" \
  --collateral "$T/tdx/v5-uptodate-90c06f-gotdxguest/collateral.json" --at 2026-03-01T00:00:00Z
run verify tdx "$T/tdx/v4-debug-td-50806f-trustee/quote.bin" \
  --collateral "$T/tdx/v4-debug-td-50806f-trustee/collateral.json" --at 2023-07-01T00:00:00Z
run verify snp "$T/snp/turin-v5-oak/report.bin" --vcek "$T/snp/turin-v5-oak/vcek.der" \
  --ask "$T/snp/turin-v5-oak/ask.pem" --ark "$T/snp/turin-v5-oak/ark.pem" --at 2026-01-01T00:00:00Z
run verify gpu "$T/gpu/h100-coco-ci-trustee/attestation_report.bin" \
  --chain "$T/gpu/h100-coco-ci-trustee/cert_chain.pem" \
  --nonce 87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec

[ "$enclave" = 1 ] || exit 0

model="${CLOISTER_MODELS_DIR:-$HOME/.cache/cloister/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
work=$(mktemp -d)
log="$work/enclave.log"
printf '\n$ cloister enclave --model %s --model-id smollm2 --tee simulated --listen %s\n' "$model" "$listen"
"$bin" enclave --model "$model" --model-id smollm2 --tee simulated --listen "$listen" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 600); do
  grep -q 'cloister enclave listening on' "$log" && break
  kill -0 $pid 2>/dev/null || { cat "$log"; echo "the enclave did not start" >&2; exit 1; }
  sleep 0.2
done
cat "$log"

nonce=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
python3 - "http://$listen/attestation?nonce=$nonce" "$work/bundle.json" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
    open(sys.argv[2], "wb").write(r.read())
EOF
printf '[simulated]\nallow = true\n' > "$work/dev-policy.toml"
run verify bundle "$work/bundle.json" --nonce "$nonce" --policy "$work/dev-policy.toml"
run verify bundle "$work/bundle.json" --nonce "$nonce"

cat <<EOF

The enclave is serving on http://$listen (simulated TEE; development only):
  GET  /attestation?nonce=<64 hex>   evidence bundle bound to the nonce and the node's keys
  POST /v1/sealed                    OHTTP-sealed OpenAI request -> sealed chunks + signed receipt
  GET  /healthz
Its log follows; Ctrl-C stops it (requests in flight finish first).
EOF
tail -n 0 -f "$log" --pid=$pid &
wait $pid
