#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2054 # common.sh reads the variables set here; commas are QEMU option syntax
# Starts the Cloister CVM as an Intel TDX guest (QEMU 10.1 or later) with
# NVIDIA GPUs passed through by VFIO. See --help and docs/provider-guide.md.
set -euo pipefail

FIRMWARE_HELP="TDVF (OVMF built with TDX support), loaded with -bios"
qgs="vsock:4050"

usage() {
  cat <<'USAGE'
Usage: deploy/qemu/launch-tdx.sh [OPTIONS]

Boots the image built by deploy/image directly in a TDX trust domain: TDVF
is measured into MRTD, and TDVF measures the kernel, initrd and command line
given here into the RTMRs. Each --gpu sits behind its own PCIe root port.

USAGE
  common_usage
  cat <<'USAGE'
TDX only:
  --qgs ADDR              where QEMU reaches the host's Quote Generation
                          Service for the guest's quotes: vsock:PORT (host
                          CID 2) or unix:/PATH (default vsock:4050)

Example:
  deploy/qemu/launch-tdx.sh --vcpus 16 --memory 256G --firmware /path/to/tdvf/OVMF.fd \
    --kernel out/vmlinuz --initrd out/initrd.img --append "$(cat out/cmdline)" \
    --root-image out/root.squashfs --root-hash-image out/root.verity \
    --model-image out/model.squashfs --model-hash-image out/model.verity \
    --host-config host.conf --gpu 0000:41:00.0 --port 7070

The expected measurement for auditors: the same options plus --print-measure.
USAGE
}

platform_option() {
  case "$1" in
    --qgs) need_value "$@"; qgs="$2"; shifted=2 ;;
    *) return 1 ;;
  esac
}

qgs_socket() {
  case "$qgs" in
    vsock:*)
      [[ "${qgs#vsock:}" =~ ^[1-9][0-9]{0,9}$ ]] || die "--qgs vsock:PORT needs a port number, not '$qgs'"
      echo "{\"type\":\"vsock\",\"cid\":\"2\",\"port\":\"${qgs#vsock:}\"}" ;;
    unix:/*)
      [[ "${qgs#unix:}" != *[\"\\]* ]] || die "--qgs unix:PATH must not contain quotes or backslashes"
      echo "{\"type\":\"unix\",\"path\":\"${qgs#unix:}\"}" ;;
    *) die "--qgs must be vsock:PORT or unix:/PATH, not '$qgs'" ;;
  esac
}

platform_args() {
  local socket
  socket="$(qgs_socket)"
  # JSON form: the quote-generation socket is a structured property.
  args+=(-object "{\"qom-type\":\"tdx-guest\",\"id\":\"tdx0\",\"quote-generation-socket\":$socket}")
  args+=(-machine q35,confidential-guest-support=tdx0,kernel-irqchip=split)
  args+=(-cpu host -bios "$firmware")
}

platform_measure() {
  m=(cloister measure tdx --tdvf "$firmware" --kernel "$kernel" --initrd "$initrd" --append "$append")
}

. "$(dirname "$0")/common.sh"
main "$@"
