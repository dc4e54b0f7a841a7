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

step() { printf '\n== %s\n' "$*"; }

# Seconds, before anything long: what setup decides about libclang.
step "setup's libclang detection against fake ldconfig listings"
scripts/tests/libclang-detection.sh

scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

step "libtdx_attest FFI against a fake library (feature tdx-attest-lib)"
attestation/collect/tests/tdx-attest-fake/run.sh --locked
