#!/usr/bin/env bash
# Compiles contracts-bindings/solidity/*.sol (and test/*.sol) with solc 0.8.37
# (solcjs from the npm registry) and writes contracts-bindings/artifacts/:
# one JSON per contract (abi, bytecode, deployedBytecode) and SOURCES.sha256,
# the hash the Rust test `artifacts_are_current` compares with the sources.
#   scripts/compile-contracts.sh           compile and write the artifacts
#   scripts/compile-contracts.sh --check   compile and fail if they differ
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/chain-tools.sh
source scripts/lib/chain-tools.sh
chain_tools_install
exec python3 scripts/lib/compile_contracts.py "$SOLCJS" "$@"
