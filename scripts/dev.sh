#!/usr/bin/env bash
# Starts the local stack. Today the stack is the offline verifier: this builds
# `cloister` and verifies the recorded hardware evidence of every platform.
# The router and the simulated-TEE enclave join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
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

printf '\nThe verifier is at %s; try `%s verify --help`.\n' "$bin" "$bin"
