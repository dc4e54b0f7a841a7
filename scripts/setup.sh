#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine with
# Rust. Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_rust_component() {
  if ! cargo "$1" --version >/dev/null 2>&1; then
    echo "setup: installing rust component $2"
    rustup component add "$2"
  fi
}
need_rust_component fmt rustfmt
need_rust_component clippy clippy

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest not found; tests will run with cargo test"
fi
echo "setup: ok"
