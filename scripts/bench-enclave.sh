#!/usr/bin/env bash
# Inference benchmarks for BENCHMARKS.md, in one run on an idle machine:
#   1. SmolLM2-135M through `cloister enclave` (sealed, streaming, HTTP;
#      chunks padded to 256 bytes, the default, and unpadded) against
#      mistral.rs alone (same engine in process), alternating rounds, with
#      the response bytes on the wire;
#   2. the engine at each CPU dtype;
#   3. mistral.rs against llama.cpp (llama-cpp-python, 2 threads) on the
#      same GGUF, prompt and greedy settings;
#   4. per-request protocol costs (criterion): sealing, opening, receipts.
#
#   scripts/bench-enclave.sh [--rounds 5] [--max-tokens 128] [--skip-protocol] [--sealed-only]
#
# --sealed-only runs step 1 (and 2) alone: no llama.cpp, no criterion.
#
# llama-cpp-python is built from source by pip into
# ~/.cache/cloister/bench-venv the first time (a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5 max_tokens=128 protocol=1 llama=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --skip-protocol) protocol=0; shift ;;
    --sealed-only) protocol=0; llama=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh >/dev/null
model="${CLOISTER_MODELS_DIR:-$HOME/.cache/cloister/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
venv="$HOME/.cache/cloister/bench-venv"
if [ "$llama" = 1 ] && ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  echo "installing llama-cpp-python into $venv (builds llama.cpp; a few minutes)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'llama-cpp-python==0.3.*'
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
echo "CPU: $cpu, $(nproc) cores; rustflags from .cargo/config.toml (target-cpu=native)"
echo

cargo build --quiet --example bench_sealed -p cloister-enclave
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# (mistral.rs prints the GGUF metadata on stdout at each load: keep the tables)
"$target_dir/debug/examples/bench_sealed" --model "$model" --rounds "$rounds" \
  --max-tokens "$max_tokens" --json "$out/mistral.json" | grep -E '^(\||$)'

[ "$llama" = 1 ] || exit 0
"$venv/bin/python" scripts/bench_llama_cpp.py "$model" --rounds "$rounds" \
  --max-tokens "$max_tokens" --threads 2 > "$out/llama.json"

python3 - "$out/mistral.json" "$out/llama.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
l = json.load(open(sys.argv[2]))
best = max(m["dtypes"].items(), key=lambda kv: kv[1]["decode_tok_s"])
rows = [(f"mistral.rs alone ({best[0]})", best[1]), ("llama.cpp (llama-cpp-python, 2 threads)", l)]
print(f"\n| engine, SmolLM2-135M Q4_1, {l['prompt_tokens']}-token prompt, greedy | TTFT s | prompt tok/s | generation tok/s | generation ratio to llama.cpp |")
print("|---|---:|---:|---:|---:|")
for name, r in rows:
    print(f"| {name} | {r['ttft_s']:.3f} | {r['prompt_tok_s']:.1f} | {r['decode_tok_s']:.1f} | {r['decode_tok_s'] / l['decode_tok_s']:.2f} |")
print(f"\n(mistral.rs counted {best[1]['prompt_tokens']} prompt / {best[1]['completion_tokens']} generated tokens, "
      f"llama.cpp {l['prompt_tokens']} / {l['completion_tokens']}; medians of {l['rounds']} rounds)")
EOF

if [ "$protocol" = 1 ]; then
  echo
  cargo bench --quiet -p cloister-protocol --bench protocol -- --noplot >"$out/criterion.log" 2>&1 ||
    { cat "$out/criterion.log"; exit 1; }
  python3 scripts/bench_table.py "$target_dir/criterion" \
    'seal_request_2KiB|open_request_2KiB|seal_chunk_200B|open_chunk_200B|finish_seal_and_open|sign_receipt|recover_receipt_signer'
fi
