#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after the time), one at a time,
# for the given number of seconds each (default 180), then prints a summary.
#
#   fuzz/run.sh                 # all targets, 180 s each
#   fuzz/run.sh 600 tdx_quote   # one target, 10 minutes
#   SANITIZER=none fuzz/run.sh  # no AddressSanitizer (several times faster on
#                               # the crypto-heavy *_appraise targets); builds
#                               # into fuzz/target/nosan so the two builds coexist
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc accept the -Z flags
# cargo-fuzz passes (-Zsanitizer=address, ...). Corpus: fuzz/corpus/<target>
# (seeded by seed.sh when empty), crashes: fuzz/artifacts/<target>/, logs and
# the summary table: fuzz/target/run-logs/<sanitizer>/.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
secs="${1:-180}"
shift $(( $# > 0 ? 1 : 0 ))
all=(tdx_quote tdx_collateral tdx_appraise snp_report snp_appraise snp_cert_table gpu_report gpu_appraise simulated bundle_json policy_toml protocol_frames protocol_open protocol_receipt request_filter snp_crl measure_firmware)
targets=("${@:-${all[@]}}")
export RUSTC_BOOTSTRAP=1
build_flags=()
if [ "${SANITIZER:-address}" != address ]; then
  build_flags=(--sanitizer "$SANITIZER" --target-dir target/nosan)
fi
logs="$here/target/run-logs/${SANITIZER:-address}"
mkdir -p "$logs"

# Each target builds on its first run; build them all up front so the
# fuzzing time is not spent compiling.
cargo fuzz build "${build_flags[@]}" || exit 1
for t in "${targets[@]}"; do
  if [ -z "$(ls -A "corpus/$t" 2>/dev/null)" ]; then ./seed.sh >/dev/null || exit 1; fi
done

summary="$logs/summary.md"
{
  echo "| target | seconds | runs | exec/s | cov | ft | corpus | peak RSS MB | crashes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
} > "$summary"
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  before="$(ls "artifacts/$t" | sort)"
  dict=()
  [ -f "dicts/$t.dict" ] && dict=("-dict=dicts/$t.dict")
  log="$logs/$t.log"
  echo "=== $t: ${secs}s (log: $log)"
  start=$SECONDS
  # -timeout=10: an input that runs 10 s is a hang (libFuzzer's default, 1200 s,
  # would never fire in a short run); the slowest target needs ~50 ms/input.
  cargo fuzz run "${build_flags[@]}" "$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}" \
    > "$log" 2>&1
  rc=$?
  elapsed=$(( SECONDS - start ))  # includes any rebuild; libFuzzer's own time is preferred
  fuzz_secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)"
  [ -n "$fuzz_secs" ] || fuzz_secs=$elapsed
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n1)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  [ -n "$runs" ] || runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n1)"
  status="$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")"
  corp="$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$status")"
  new="$(comm -13 <(echo "$before") <(ls "artifacts/$t" | sort) | grep -E '^(crash|leak|timeout|oom)-' || true)"
  if [ -n "$new" ]; then
    crashes="$(wc -l <<<"$new"): $(tr '\n' ' ' <<<"$new")"
  elif [ "$rc" -ne 0 ]; then
    crashes="exit $rc, see log"
  else
    crashes=0
  fi
  eps=$(( ${runs:-0} / (fuzz_secs > 0 ? fuzz_secs : 1) ))
  echo "| $t | $fuzz_secs | ${runs:-?} | $eps | ${cov:-?} | ${ft:-?} | ${corp:-?} | ${rss:-?} | $crashes |" >> "$summary"
  tail -n1 "$summary"
done

echo
echo "Summary (RUSTC_BOOTSTRAP=1 cargo fuzz run ${build_flags[*]} <target> -- -max_total_time=$secs -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 [-dict=dicts/<target>.dict]):"
column -t -s '|' -o '|' "$summary" 2>/dev/null || cat "$summary"
