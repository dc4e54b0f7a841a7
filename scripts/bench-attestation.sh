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

# Instruction counts (valgrind callgrind): deterministic, unlike wall-clock
# time on a shared machine. Per verification = (count at N - count at 0) / N.
# valgrind does not decode AVX-512, which the workspace's target-cpu=native
# emits on machines that have it, so the loop is built for x86-64-v3 (AVX2)
# in a target directory of its own; a run valgrind cannot finish is an error,
# not a row.
if command -v valgrind >/dev/null; then
  RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$target_dir/valgrind" \
    cargo build --release --example tdx_verify_loop --example snp_verify_loop
  loop="$target_dir/valgrind/release/examples/tdx_verify_loop"
  count() {
    local out
    out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --error-exitcode=99 "$loop" "$1" "$2" 2>&1) \
      || { echo "valgrind failed on $1 $2:" >&2; echo "$out" | tail -20 >&2; exit 1; }
    echo "$out" | sed -n 's/.*Collected : //p'
  }
  echo
  echo "| TDX v4-uptodate-b0c06f, per verification | instructions | ratio to dcap-qvl direct |"
  echo "|---|---:|---:|"
  base=""
  for mode in dcap-qvl cloister cloister-appraise parse; do
    zero=$(count "$mode" 0); n=$(count "$mode" 20)
    per=$(( (n - zero) / 20 ))
    [ -n "$base" ] || base=$per
    printf '| %s | %d | %s |\n' "$mode" "$per" "$(python3 -c "print(f'{$per/$base:.3f}')")"
  done
  loop="$target_dir/valgrind/release/examples/snp_verify_loop"
  echo
  echo "| SEV-SNP genoa-v5-oak, per verification | instructions | ratio to the sev crate's RSA-PSS links |"
  echo "|---|---:|---:|"
  base=""
  for mode in sev-links cloister; do
    zero=$(count "$mode" 0); n=$(count "$mode" 20)
    per=$(( (n - zero) / 20 ))
    [ -n "$base" ] || base=$per
    printf '| %s | %d | %s |\n' "$mode" "$per" "$(python3 -c "print(f'{$per/$base:.3f}')")"
  done
else
  echo "(valgrind not installed: no instruction counts)"
fi
