#!/usr/bin/env bash
# systemd-analyze verify on the CVM's systemd units (deploy/systemd), and
# systemd-analyze security on the enclave's.
#
# verify checks that every Exec*= binary exists and is executable, so it runs
# against a temporary root (--root) holding an executable at exactly each
# path the image provides: a unit naming another path still fails. Any line
# verify prints (unknown keys, bad values are only warnings) is a failure.
# Needs: systemd (systemd-analyze).
set -euo pipefail
cd "$(dirname "$0")/../.."

units=(
  cloister-enclave.service
  cloister-models.service
  cloister-host-config.service
  cloister-nvidia-persistenced.service
  cloister-gpu-ready.service
)
# The paths the image's packages and overlay put there (see packages.txt
# and deploy/image/overlay): kept by hand on purpose, not read from the units.
binaries=(
  /usr/bin/cloister
  /usr/lib/cloister/open-models
  /usr/lib/cloister/host-config
  /usr/sbin/modprobe
  /usr/sbin/veritysetup
  /usr/bin/umount
  /usr/bin/rm
  /usr/bin/nvidia-modprobe
  /usr/bin/nvidia-persistenced
  /usr/lib/nvidia/current/nvidia-smi
)

failed=0
fail() { echo "FAIL: $*"; failed=1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
# The distribution's units (targets, nftables.service, mounts) that ours name.
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
if [ ! -e "$root/usr/lib/systemd/system/nftables.service" ]; then
  # The image gets it from Debian's nftables package.
  printf '[Unit]\nDescription=nftables\n[Service]\nType=oneshot\nExecStart=/usr/bin/true\n' \
    > "$root/usr/lib/systemd/system/nftables.service"
  binaries+=(/usr/bin/true)
fi
for b in "${binaries[@]}"; do
  mkdir -p "$root$(dirname "$b")"
  printf '#!/bin/sh\nexit 0\n' > "$root$b"
  chmod 0755 "$root$b"
done
for u in "${units[@]}"; do
  [ -f "deploy/systemd/$u" ] || { fail "deploy/systemd/$u is missing"; continue; }
  cp "deploy/systemd/$u" "$root/etc/systemd/system/$u"
done

for u in "${units[@]}"; do
  out="$(systemd-analyze verify --man=no --root="$root" "/etc/systemd/system/$u" 2>&1)" && rc=0 || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
    fail "systemd-analyze verify $u (exit $rc):"
    printf '%s\n' "$out" | sed 's/^/    /'
  else
    echo "ok: verify $u"
  fi
done

# A missing binary must fail the check (the stub root does not hide typos).
rm "$root/usr/bin/cloister"
if systemd-analyze verify --man=no --root="$root" /etc/systemd/system/cloister-enclave.service >/dev/null 2>&1; then
  fail "verify passed with /usr/bin/cloister absent: the check proves nothing"
else
  echo "ok: verify fails when the ExecStart binary is absent"
fi

# Hardening must not regress: systemd's own exposure score for the enclave.
# --threshold is systemd's internal scale, ten times the printed level.
out="$(systemd-analyze security --offline=true --threshold=30 --root="$root" \
  /etc/systemd/system/cloister-enclave.service 2>&1)" && rc=0 || rc=$?
score="$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
if [ "$rc" -ne 0 ]; then
  fail "cloister-enclave.service exposure ${score:-?} is over 3.0 (systemd-analyze security)"
  printf '%s\n' "$out" | grep '✗' | sed 's/^/    /' | head -40
else
  echo "ok: cloister-enclave.service exposure $score (at most 3.0)"
fi

if [ "$failed" -ne 0 ]; then echo "deploy-units: FAILED"; exit 1; fi
echo "deploy-units: all passed"
