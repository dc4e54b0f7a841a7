#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs exactly this).
# Installs what the tests need, then runs lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ]; then
  # Outside the clone so that reruns on the same machine are incremental.
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cloister/target}"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Settings of the stack from the caller's shell (the `export` lines that
# `cloister dev` prints, say) would change what the commands under test do:
# every environment variable the configuration reference lists is cleared.
while read -r var; do
  unset "$var"
done < <(grep -oE '^\| `[^`]+` \| `[A-Z][A-Z0-9_]+` \|' docs/configuration.md | grep -oE '`[A-Z][A-Z0-9_]+`' | tr -d '`' | sort -u)
unset OPENAI_BASE_URL OPENAI_API_KEY CLOISTER_CHAIN_KEY_FILE

step() { printf '\n== %s\n' "$*"; }

# Seconds, before anything long: what setup decides about libclang.
step "setup's libclang detection against fake ldconfig listings"
scripts/tests/libclang-detection.sh

scripts/setup.sh
# The deploy/ tests' and `cloister measure` cross-checks' tools.
# shellcheck source=lib/deploy-tools.sh
source scripts/lib/deploy-tools.sh
deploy_tools_install

step "contract artifacts are what solc makes of the sources"
scripts/compile-contracts.sh --check

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --no-fail-fast "$@"
  else
    cargo test --locked --no-fail-fast "$@"
  fi
}

step "tests (router ledger on SQLite)"
run_tests --workspace
if cargo nextest --version >/dev/null 2>&1; then
  cargo test --workspace --locked --doc
fi

step "router tests again, on PostgreSQL (Debian package, throwaway cluster)"
pg_dir="$(mktemp -d)"
trap 'scripts/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true; rm -rf "$pg_dir"' EXIT
export "$(scripts/postgres.sh start "$pg_dir")"
# The same workspace build as above, filtered to the router's tests: `-p`
# would resolve features for the router alone and rebuild it (10 minutes).
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --workspace -E 'package(cloister-router)'
else
  cargo test --locked --no-fail-fast -p cloister-router
fi
scripts/postgres.sh stop "$pg_dir"
unset CLOISTER_TEST_POSTGRES_URL

step "acceptance: the openai Python SDK and headless Chromium against cloister dev"
# The `cloister` binary the test build above made (same features): `-p
# cloister-cli` would resolve features for the CLI alone and rebuild most of
# the dependency graph (about 9 minutes on 2 cores).
cargo test --workspace --locked --no-run
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
scripts/tests/openai-sdk.sh "$target_dir/debug/cloister"

step "deploy: unit files, guest firewall, launch scripts, guest scripts, container, Helm chart"
for t in deploy-units deploy-nftables deploy-launch deploy-guest-scripts; do
  "scripts/tests/$t.sh"
done
for t in deploy-router-unit deploy-container deploy-chart; do
  "scripts/tests/$t.sh" "$target_dir/debug/cloister"
done

step "libtdx_attest FFI against a fake library (feature tdx-attest-lib)"
attestation/collect/tests/tdx-attest-fake/run.sh --locked
