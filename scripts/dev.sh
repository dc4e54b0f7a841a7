#!/usr/bin/env bash
# The README's first command: installs what the stack needs (scripts/setup.sh:
# Rust components, Debian packages, the SmolLM2-135M-Instruct model), builds
# `cloister`, and runs `cloister dev`: the router on 127.0.0.1:8080 with SQLite
# in ./.cloister and one simulated-TEE enclave (development only). When ready
# it prints the `export OPENAI_BASE_URL=...` / `export OPENAI_API_KEY=...`
# lines, the status page and a curl line. Ctrl-C stops everything.
#
#   scripts/dev.sh [cloister dev options: --port N --data-dir DIR ...]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0"; exec cargo run --quiet --locked -p cloister-cli -- dev --help ;;
esac
scripts/setup.sh >&2
# The whole workspace, so features resolve as in the test build
# (scripts/test.sh then reuses this build instead of redoing most of it).
cargo build --locked --workspace >&2
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/cloister"
exec "$bin" dev "$@"
