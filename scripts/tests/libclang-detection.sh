#!/usr/bin/env bash
# Tests scripts/lib/libclang.sh against fake `ldconfig -p` listings and
# library directories. Runs in a second; scripts/test.sh runs it first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/libclang.sh
source "$here/../lib/libclang.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0

# A fake ldconfig printing the given library names the way `ldconfig -p` does.
fake_ldconfig() {
  local script="$work/ldconfig-$RANDOM"
  {
    echo '#!/bin/sh'
    echo "echo \"$# libs found in cache \\\`/etc/ld.so.cache'\""
    for lib in "$@"; do
      echo "echo '	$lib (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/$lib'"
    done
  } >"$script"
  chmod +x "$script"
  echo "$script"
}

expect() {
  local want="$1" label="$2" got=absent
  shift 2
  if (unset LIBCLANG_PATH; export "$@"; libclang_present); then got=present; fi
  if [ "$got" = "$want" ]; then
    echo "ok   $label: $got"
  else
    echo "FAIL $label: expected $want, got $got"
    failures=$((failures + 1))
  fi
}

empty_dirs="$work/no-llvm-*/lib"
expect absent "only libclang-cpp.so.14 (this machine image)" \
  LDCONFIG="$(fake_ldconfig libclang-cpp.so.14 libLLVM-14.so.1)" LLVM_LIB_GLOB="$empty_dirs"
expect absent "nothing" LDCONFIG="$(fake_ldconfig)" LLVM_LIB_GLOB="$empty_dirs"
expect absent "no ldconfig at all" LDCONFIG="$work/missing" LLVM_LIB_GLOB="$empty_dirs"
for lib in libclang-14.so.1 libclang-14.so libclang.so.1 libclang.so libclang.so.16.0.6 libclang-18.so.18.1; do
  expect present "$lib" LDCONFIG="$(fake_ldconfig libclang-cpp.so.14 "$lib")" LLVM_LIB_GLOB="$empty_dirs"
done
expect absent "libclangBasic.a and libclang-cpp.so" \
  LDCONFIG="$(fake_ldconfig libclangBasic.a libclang-cpp.so)" LLVM_LIB_GLOB="$empty_dirs"

mkdir -p "$work/llvm-14/lib" "$work/custom" "$work/cpp-only"
touch "$work/llvm-14/lib/libclang-14.so.1" "$work/custom/libclang.so" "$work/cpp-only/libclang-cpp.so.14"
expect present "llvm-config style directory" \
  LDCONFIG="$(fake_ldconfig libclang-cpp.so.14)" LLVM_LIB_GLOB="$work/llvm-*/lib"
expect present "LIBCLANG_PATH directory" LIBCLANG_PATH="$work/custom" LDCONFIG="$(fake_ldconfig)" LLVM_LIB_GLOB="$empty_dirs"
expect present "LIBCLANG_PATH file" LIBCLANG_PATH="$work/custom/libclang.so" LDCONFIG="$(fake_ldconfig)" LLVM_LIB_GLOB="$empty_dirs"
expect absent "LIBCLANG_PATH holding only libclang-cpp" \
  LIBCLANG_PATH="$work/cpp-only" LDCONFIG="$(fake_ldconfig libclang-14.so.1)" LLVM_LIB_GLOB="$empty_dirs"

if [ "$failures" -gt 0 ]; then
  echo "libclang detection: $failures failure(s)" >&2
  exit 1
fi
echo "libclang detection: all cases pass"
