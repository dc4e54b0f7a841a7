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
#   pkg-config    used by -sys crates
debian_packages=()
ldconfig -p 2>/dev/null | grep -q 'libclang' || debian_packages+=(libclang-dev)
command -v pkg-config >/dev/null || debian_packages+=(pkg-config)
if [ ${#debian_packages[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${debian_packages[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${debian_packages[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest not found; tests will run with cargo test"
fi
echo "setup: ok"
