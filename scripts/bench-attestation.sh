#!/usr/bin/env bash
# Verification benchmarks (criterion) and the table for BENCHMARKS.md.
#   scripts/bench-attestation.sh            full run (~3 minutes)
# Run on an otherwise idle machine: the TDX rows compare Cloister's verifier
# with calling dcap-qvl directly, in the same run, as a ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p cloister-attestation --bench verify -- --noplot "$@"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
python3 scripts/bench_table.py "$target_dir/criterion"
