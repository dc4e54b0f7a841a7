#!/usr/bin/env bash
# Builds a fake libtdx_attest (from our own header, written from Intel's
# documented ABI) and runs this crate's tests with feature tdx-attest-lib
# linked against it. Needs a C compiler, ar and libclang for bindgen
# (Debian: apt-get install libclang-dev). Extra arguments go to cargo test.
#
# CARGO_TARGET_DIR is honoured; the fake is built under $TDX_ATTEST_FAKE_BUILD
# (default: $TMPDIR/cloister-tdx-attest-fake).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
build="${TDX_ATTEST_FAKE_BUILD:-${TMPDIR:-/tmp}/cloister-tdx-attest-fake}"

# shellcheck source=../../../../scripts/lib/libclang.sh
source "$repo/scripts/lib/libclang.sh"
if ! libclang_present; then
    echo "run.sh: no libclang.so or libclang-N.so found (libclang-cpp does not count);" \
        "bindgen needs it (scripts/setup.sh installs libclang-dev)" >&2
    exit 1
fi

mkdir -p "$build"
"${CC:-cc}" -std=c11 -Wall -Wextra -Werror -O2 -fPIC -I"$here/include" \
    -c "$here/fake_tdx_attest.c" -o "$build/fake_tdx_attest.o"
rm -f "$build/libtdx_attest.a"
"${AR:-ar}" rcs "$build/libtdx_attest.a" "$build/fake_tdx_attest.o"
echo "run.sh: built $build/libtdx_attest.a"

export TDX_ATTEST_INCLUDE_DIR="$here/include"
export TDX_ATTEST_LIB_DIR="$build"
export TDX_ATTEST_FAKE=1

cd "$repo"
cargo test -p cloister-attestation-collect --features tdx-attest-lib "$@"
