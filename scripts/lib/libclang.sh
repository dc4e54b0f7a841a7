# Sourced by scripts/setup.sh and the libtdx_attest fake's run.sh.
#
# libclang_present: succeeds when bindgen (through clang-sys, which loads
# libclang at run time) will find a libclang. clang-sys accepts files named
# libclang.so, libclang-N.so, libclang.so.N or libclang-N.so.N, and never
# libclang-cpp.* (a different library that Debian images often ship alone:
# `ldconfig -p | grep libclang` is fooled by it). It looks in LIBCLANG_PATH
# when set (only there), else in llvm-config's lib directory and the
# system library directories.
#
# For tests: LDCONFIG names the command that prints the `ldconfig -p`
# listing (default: ldconfig), LLVM_LIB_GLOB the directories to search
# besides (default: /usr/lib/llvm-*/lib).

# Whether a file name is one clang-sys loads.
libclang_name_ok() {
  case "$1" in
    *-cpp.*) return 1 ;;
  esac
  [[ "$1" =~ ^libclang(-[0-9][0-9.]*)?\.so(\.[0-9][0-9.]*)?$ ]]
}

libclang_present() {
  local name path dir
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    if [ -f "$LIBCLANG_PATH" ]; then
      libclang_name_ok "$(basename "$LIBCLANG_PATH")"
      return
    fi
    for path in "$LIBCLANG_PATH"/*; do
      [ -f "$path" ] && libclang_name_ok "$(basename "$path")" && return 0
    done
    return 1
  fi
  while read -r name _; do
    libclang_name_ok "$name" && return 0
  done < <("${LDCONFIG:-ldconfig}" -p 2>/dev/null | sed -n 's/^[[:space:]]*\([^[:space:]]*\) .*/\1/p')
  # shellcheck disable=SC2086 # the glob is meant to expand
  for dir in ${LLVM_LIB_GLOB:-/usr/lib/llvm-*/lib}; do
    for path in "$dir"/libclang*; do
      [ -f "$path" ] && libclang_name_ok "$(basename "$path")" && return 0
    done
  done
  return 1
}
