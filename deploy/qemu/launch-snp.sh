#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2054 # common.sh reads the variables set here; commas are QEMU option syntax
# Starts the Cloister CVM as an AMD SEV-SNP guest (QEMU 9.1 or later) with
# NVIDIA GPUs passed through by VFIO. See --help and docs/provider-guide.md.
set -euo pipefail

FIRMWARE_HELP="OVMF built for SEV with kernel hashes (OvmfPkg/AmdSev), -bios"
cpu="EPYC-v4"

usage() {
  cat <<'USAGE'
Usage: deploy/qemu/launch-snp.sh [OPTIONS]

Boots the image built by deploy/image directly in an SEV-SNP guest with
kernel-hashes=on: the hashes of the kernel, initrd and command line given
here are part of the launch measurement, with the firmware and the vCPU
count and type. Each --gpu sits behind its own PCIe root port.

USAGE
  common_usage
  cat <<'USAGE'
SEV-SNP only:
  --cpu TYPE              QEMU vCPU model, part of the measurement
                          (default EPYC-v4)

Example:
  deploy/qemu/launch-snp.sh --vcpus 16 --memory 256G --firmware /path/to/amdsev/OVMF.fd \
    --kernel out/vmlinuz --initrd out/initrd.img --append "$(cat out/cmdline)" \
    --root-image out/root.squashfs --root-hash-image out/root.verity \
    --model-image out/model.squashfs --model-hash-image out/model.verity \
    --host-config host.conf --gpu 0000:41:00.0 --port 7070

The expected measurement for auditors: the same options plus --print-measure.
USAGE
}

platform_option() {
  case "$1" in
    --cpu) need_value "$@"; cpu="$2"; shifted=2 ;;
    *) return 1 ;;
  esac
}

check_cpu() {
  [[ "$cpu" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--cpu must be a QEMU CPU model name like EPYC-v4, not '$cpu'"
}

platform_args() {
  check_cpu
  args+=(-machine q35,confidential-guest-support=sev0,memory-backend=ram1)
  args+=(-object "memory-backend-memfd,id=ram1,size=$memory")
  args+=(-object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on)
  args+=(-cpu "$cpu" -bios "$firmware")
}

platform_measure() {
  check_cpu
  m=(cloister measure snp --ovmf "$firmware" --vcpus "$vcpus" --vcpu-type "$cpu"
    --kernel "$kernel" --initrd "$initrd" --append "$append")
}

. "$(dirname "$0")/common.sh"
main "$@"
