#!/usr/bin/env bash
# deploy/qemu/launch-{tdx,snp}.sh without QEMU, KVM or a GPU: the --dry-run
# command lines and --print-measure commands against the expected ones in
# scripts/tests/deploy-launch/ (TDX and SNP with 0, 1 and 2 GPUs), and every
# kind of bad input: exit status 2 and a message naming the problem.
# Regenerate the expected files after an intended change with
#   scripts/tests/deploy-launch.sh --update   (then read the diff).
# Needs: bash, diff.
set -euo pipefail
cd "$(dirname "$0")/../.."
expected=scripts/tests/deploy-launch
update=0
[ "${1:-}" = --update ] && update=1

failed=0
passed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }

append='console=ttyS0 panic=30 ro root=/dev/mapper/root rootfstype=squashfs ipv6.disable=1 cloister.root_verity=1111111111111111111111111111111111111111111111111111111111111111 cloister.model_verity=2222222222222222222222222222222222222222222222222222222222222222'
base=(--vcpus 16 --memory 256G --kernel out/vmlinuz --initrd out/initrd.img --append "$append"
  --root-image out/root.squashfs --root-hash-image out/root.verity
  --model-image out/model.squashfs --model-hash-image out/model.verity --host-config host.conf)

# name, script, extra arguments
check_output() {
  local name="$1" script="$2"
  shift 2
  local out rc
  out="$("deploy/qemu/$script" "$@" 2>&1)" && rc=0 || rc=$?
  if [ "$rc" -ne 0 ]; then fail "$name: exit $rc: $out"; return; fi
  if [ "$update" -eq 1 ]; then printf '%s\n' "$out" > "$expected/$name.txt"; fi
  if diff -u "$expected/$name.txt" <(printf '%s\n' "$out") > /tmp/deploy-launch-diff.$$; then
    ok "$name"
  else
    fail "$name differs from $expected/$name.txt:"
    sed 's/^/    /' /tmp/deploy-launch-diff.$$
  fi
  rm -f /tmp/deploy-launch-diff.$$
}

tdx=(--firmware fw/OVMF.tdx.fd "${base[@]}")
snp=(--firmware fw/OVMF.amdsev.fd "${base[@]}")
check_output tdx-0gpu launch-tdx.sh "${tdx[@]}" --dry-run
check_output tdx-1gpu launch-tdx.sh "${tdx[@]}" --gpu 0000:41:00.0 --dry-run
check_output tdx-2gpu launch-tdx.sh "${tdx[@]}" --gpu 0000:41:00.0 --gpu 0000:C1:00.0 \
  --port 17070 --qgs unix:/run/tdx-qgs/qgs.socket --qemu /opt/qemu/bin/qemu-system-x86_64 --dry-run
check_output snp-0gpu launch-snp.sh "${snp[@]}" --dry-run
check_output snp-1gpu launch-snp.sh "${snp[@]}" --gpu 0000:41:00.0 --dry-run
check_output snp-2gpu launch-snp.sh "${snp[@]}" --gpu 0000:41:00.0 --gpu 0000:c1:00.0 \
  --cpu EPYC-Genoa --port 17070 --dry-run
check_output tdx-measure launch-tdx.sh "${tdx[@]}" --print-measure
check_output snp-measure launch-snp.sh "${snp[@]}" --cpu EPYC-Genoa --vcpus 32 --print-measure

# The measure command must give back exactly the --append string when a
# shell reads it (the command line is hashed byte for byte).
line="$(deploy/qemu/launch-snp.sh "${snp[@]}" --print-measure)"
eval "set -- $line"
got=""
while [ $# -gt 0 ]; do if [ "$1" = --append ]; then got="$2"; fi; shift; done
if [ "$got" = "$append" ]; then ok "print-measure quotes --append exactly"; else fail "print-measure --append reads back as '$got'"; fi

# name, script, expected message part, arguments
check_error() {
  local name="$1" script="$2" want="$3"
  shift 3
  local out rc
  out="$("deploy/qemu/$script" "$@" 2>&1)" && rc=0 || rc=$?
  if [ "$rc" -ne 2 ]; then
    fail "$name: exit $rc, expected 2 (output: $out)"
  elif [[ "$out" != *"$want"* ]]; then
    fail "$name: message '$out' lacks '$want'"
  else
    ok "$name: exit 2, $out"
  fi
}

without() {  # the tdx arguments without one option and its value
  local skip="$1" i
  local -a a=("${tdx[@]}")
  kept=()
  for ((i = 0; i < ${#a[@]}; i += 2)); do
    [ "${a[$i]}" = "$skip" ] || kept+=("${a[$i]}" "${a[$((i + 1))]}")
  done
}
for opt in --vcpus --memory --firmware --kernel --initrd --append --root-image \
  --root-hash-image --model-image --model-hash-image --host-config; do
  without "$opt"
  check_error "missing $opt" launch-tdx.sh "$opt is required" "${kept[@]}" --dry-run
done
check_error "short PCI address" launch-tdx.sh "is not a full PCI address" "${tdx[@]}" --gpu 41:00.0 --dry-run
check_error "PCI function 8" launch-snp.sh "is not a full PCI address" "${snp[@]}" --gpu 0000:41:00.8 --dry-run
check_error "PCI address with junk" launch-snp.sh "is not a full PCI address" "${snp[@]}" --gpu '0000:41:00.0,x-vga=on' --dry-run
check_error "non-numeric vcpus" launch-tdx.sh "--vcpus must be a number" "${tdx[@]}" --vcpus four --dry-run
check_error "zero vcpus" launch-snp.sh "--vcpus must be a number" "${snp[@]}" --vcpus 0 --dry-run
check_error "memory without unit" launch-tdx.sh "--memory must be a size" "${tdx[@]}" --memory 256 --dry-run
check_error "port out of range" launch-snp.sh "--port must be a TCP port" "${snp[@]}" --port 70000 --dry-run
check_error "append without root hash" launch-tdx.sh "no cloister.root_verity=" "${tdx[@]}" --append "console=ttyS0 cloister.model_verity=2" --dry-run
check_error "append without model hash" launch-snp.sh "no cloister.model_verity=" "${snp[@]}" --append "console=ttyS0 cloister.root_verity=1" --dry-run
check_error "comma in a path" launch-tdx.sh "must not contain a comma" "${tdx[@]}" --kernel "out/a,b" --dry-run
check_error "unknown option" launch-tdx.sh "unknown option '--cpu'" "${tdx[@]}" --cpu EPYC-v4 --dry-run
check_error "option without value" launch-snp.sh "--gpu needs a value" "${snp[@]}" --dry-run --gpu
check_error "bad --qgs" launch-tdx.sh "--qgs must be vsock:PORT or unix:/PATH" "${tdx[@]}" --qgs tcp:4050 --dry-run
check_error "bad --qgs port" launch-tdx.sh "--qgs vsock:PORT needs a port number" "${tdx[@]}" --qgs vsock:x --dry-run
check_error "bad --cpu" launch-snp.sh "--cpu must be a QEMU CPU model" "${snp[@]}" --cpu 'EPYC;reboot' --dry-run
# Without --dry-run the files are checked before anything starts (none of
# these exist here, and QEMU is never reached).
check_error "missing file" launch-tdx.sh "no readable file 'fw/OVMF.tdx.fd'" "${tdx[@]}" --qemu /nonexistent/qemu
check_error "missing file (snp)" launch-snp.sh "no readable file 'fw/OVMF.amdsev.fd'" "${snp[@]}" --qemu /nonexistent/qemu

for s in launch-tdx.sh launch-snp.sh; do
  out="$("deploy/qemu/$s" --help)" && rc=0 || rc=$?
  if [ "$rc" -eq 0 ] && [[ "$out" == *Usage:* ]] && [[ "$out" == *--dry-run* ]] && [[ "$out" == *Example:* ]]; then
    ok "$s --help"
  else
    fail "$s --help: exit $rc"
  fi
done

echo "deploy-launch: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
