#!/usr/bin/env bash
# Resolves packages.txt to exact Debian versions and rewrites image.lock.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/image/lock.sh --snapshot YYYYMMDDTHHMMSSZ

Resolves every package in packages.txt, everything it depends on and the
Essential/required base of a minbase system to exact versions, from the
Debian archive as it was at the snapshot time, and rewrites image.lock.
build.sh installs exactly those versions and fails on any difference.

Environment:
  DEBIAN_SNAPSHOT_MIRROR  (required) base URL of a Debian snapshot mirror
                          for that date: what a sources.list line names
                          before the suite.
  RUST_IMAGE              the payload builder image, by digest
                          (default: the value already in image.lock).

Needs apt (any Debian host); installs nothing, needs no root.
EOF
}

here="$(cd "$(dirname "$0")" && pwd)"
snapshot=""
while [ $# -gt 0 ]; do
  case "$1" in
    --snapshot) snapshot="${2:-}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "lock.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$snapshot" =~ ^[0-9]{8}T[0-9]{6}Z$ ]]; then
  echo "lock.sh: --snapshot YYYYMMDDTHHMMSSZ is required" >&2; exit 2
fi
: "${DEBIAN_SNAPSHOT_MIRROR:?set DEBIAN_SNAPSHOT_MIRROR to a Debian snapshot mirror for $snapshot}"

suite=trixie
components="main contrib non-free non-free-firmware"
old_rust_image="$(sed -n 's/^RUST_IMAGE=//p' "$here/image.lock" 2>/dev/null || true)"
rust_image="${RUST_IMAGE:-$old_rust_image}"
# The snapshot time is also the time stamped on every file of the image.
epoch="$(date -u -d "${snapshot:0:4}-${snapshot:4:2}-${snapshot:6:2}T${snapshot:9:2}:${snapshot:11:2}:${snapshot:13:2}Z" +%s)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc"
: > "$tmp/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_SNAPSHOT_MIRROR $suite $components" \
  > "$tmp/etc/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$tmp/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$tmp/lists" -o "Dir::State::status=$tmp/status"
  -o "Dir::Cache=$tmp/cache" -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64"
  -o "Debug::NoLocking=1" -o "Acquire::Check-Valid-Until=false" -o "APT::Sandbox::User=root"
)
apt-get "${apt_opts[@]}" -qq update

# What mmdebstrap --variant=minbase installs before --include: Essential: yes
# and Priority: required.
mapfile -t base < <(apt-cache "${apt_opts[@]}" dumpavail | awk '
  /^Package: / { p = $2 }
  /^Essential: yes/ || /^Priority: required/ { want[p] = 1 }
  END { for (p in want) print p }' | sort)
mapfile -t runtime < <(awk '$1 == "runtime" { print $2 }' "$here/packages.txt")
mapfile -t build < <(awk '$1 == "build" { print $2 }' "$here/packages.txt")
builder=(nvidia-cuda-toolkit nvidia-cuda-toolkit-gcc libcuda1)

resolve() {
  apt-get "${apt_opts[@]}" -s install --no-install-recommends "$@" |
    sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p' | sort
}

{
  echo "# Every input of the CVM image, pinned. Written by lock.sh from packages.txt;"
  echo "# build.sh installs exactly these versions and fails on any difference."
  echo "SNAPSHOT=$snapshot"
  echo "SOURCE_DATE_EPOCH=$epoch"
  echo "SUITE=$suite"
  echo "COMPONENTS=$components"
  echo "RUST_IMAGE=$rust_image"
  echo "# payload builder: CUDA toolkit packages installed in Containerfile.payload"
  resolve "${builder[@]}" | awk -v want="${builder[*]}" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) keep[w[i]] = 1 }
    ($1 in keep) { print "builder", $1, $2 }'
  echo "# image: the whole installed set before the build-only packages are purged"
  resolve "${base[@]}" "${runtime[@]}" "${build[@]}" | awk '{ print "deb", $1, $2 }'
} > "$tmp/image.lock"
mv "$tmp/image.lock" "$here/image.lock"
echo "lock.sh: wrote $here/image.lock ($(grep -c '^deb ' "$here/image.lock") packages)"
