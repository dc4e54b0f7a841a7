#!/usr/bin/env bash
# Router benchmarks for BENCHMARKS.md (issue 9), in one run on an idle machine:
#   1. paths: one real enclave (SmolLM2-135M on CPU, --max-concurrent 1) and
#      a router in front of it; N sequential streaming chat requests per
#      path, interleaved: (a) client-sealed straight to the enclave, (b)
#      client-sealed through the router's /v1/sealed/{node}, (c) plain
#      through the router's /v1/chat/completions. p50/p99 latency, TTFT,
#      generation tok/s, ratios to (a).  (router/examples/bench_paths.rs)
#      Then the same three paths to a load node (below) instead of the
#      enclave: no model noise, so the router's added milliseconds show.
#   2. load: a load node (real sealed protocol, trivial engine:
#      router/examples/load_node.rs) behind a router in its own process;
#      --clients concurrent streaming clients on the plain endpoint for
#      --duration seconds; req/s, latency, the router's CPU per request and
#      RSS. Three runs: the library router alone (router/examples/load_test.rs
#      `router`, no log subscriber) and `cloister router` as deployed
#      (logging at info to a file) with --clients, then the library router
#      with a tenth of the clients (how memory scales with open streams).
#      (router/examples/load_test.rs)
#
#   scripts/bench-router.sh [--requests 40] [--max-tokens 32] [--clients 1000]
#       [--duration 20] [--warmup 5] [--skip-paths] [--skip-load]
set -euo pipefail
cd "$(dirname "$0")/.."

requests=40 max_tokens=32 clients=1000 duration=20 warmup=5 paths=1 load=1
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --skip-paths) paths=0; shift ;;
    --skip-load) load=0; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh >/dev/null
model="${CLOISTER_MODELS_DIR:-$HOME/.cache/cloister/models}/SmolLM2-135M-Instruct.Q4_1.gguf"

cargo build --quiet -p cloister-router --examples
[ "$load" = 0 ] || cargo build --quiet -p cloister-cli --bin cloister
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
examples="$target_dir/debug/examples"

# 1000 clients hold ~1000 sockets in the generator, ~2000 in the router and
# ~1000 in the node.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"

cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
echo "CPU: $cpu, $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(date -u +%Y-%m-%d); open files limit $(ulimit -n)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [ "$paths" = 1 ]; then
  echo "## paths: $requests requests per path, max_tokens $max_tokens, SmolLM2-135M Q4_1, one node, --max-concurrent 1"
  echo
  # (mistral.rs prints the GGUF metadata on stdout at load: keep the table)
  "$examples/bench_paths" --model "$model" --requests "$requests" --max-tokens "$max_tokens" |
    grep -E '^(\||$)'
  echo
  "$examples/bench_paths" --load-node --requests "$requests" --max-tokens "$max_tokens" |
    grep -E '^(\||$)'
  echo
fi

if [ "$load" = 1 ]; then
  echo "## load: $clients streaming clients, ${warmup} s warm-up, ${duration} s recorded; node: 16 chunks, 10 ms apart"
  echo
  "$examples/load_test" run --router example --clients "$clients" --duration "$duration" \
    --warmup "$warmup" --header
  "$examples/load_test" run --router cli --cloister-bin "$target_dir/debug/cloister" \
    --clients "$clients" --duration "$duration" --warmup "$warmup"
  "$examples/load_test" run --router example --clients $((clients / 10)) --duration "$duration" \
    --warmup "$warmup"
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
