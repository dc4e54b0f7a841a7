# shellcheck shell=bash
# Shared by launch-tdx.sh and launch-snp.sh (sourced, not run): option
# parsing, input checks and the parts of the QEMU command line that do not
# depend on the platform. Each script sets PLATFORM and defines
# platform_usage, platform_option, platform_args and platform_measure.

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

qemu="qemu-system-x86_64"
shifted=0
vcpus=""
memory=""
firmware=""
kernel=""
initrd=""
append=""
root_image=""
root_hash_image=""
model_image=""
model_hash_image=""
host_config=""
port=7070
gpus=()
dry_run=0
print_measure=0

common_usage() {
  cat <<EOF
Required:
  --vcpus N               virtual CPUs (part of the SEV-SNP measurement)
  --memory SIZE           guest memory, e.g. 128G or 65536M
  --firmware FILE         $FIRMWARE_HELP
  --kernel FILE           the image's kernel (direct boot: measured)
  --initrd FILE           the image's initrd (measured)
  --append "CMDLINE"      kernel command line (measured): the one build.sh
                          printed, with cloister.root_verity= and
                          cloister.model_verity=
  --root-image FILE       root file system (squashfs) from build.sh
  --root-hash-image FILE  its dm-verity hash tree
  --model-image FILE      model volume from model.sh
  --model-hash-image FILE its dm-verity hash tree
  --host-config FILE      the host's settings for the enclave (chain_id=,
                          settlement_contract=, payout_address=,
                          prompt_price=, completion_price=): NOT measured,
                          validated inside the guest, see deploy/image/README.md
Optional:
  --gpu BDF               an NVIDIA GPU in CC mode, bound to vfio-pci, by full
                          PCI address (0000:41:00.0); repeat for more GPUs
  --port N                host TCP port forwarded to the enclave's 7070
                          (default 7070)
  --qemu PATH             QEMU binary (default qemu-system-x86_64)
  --dry-run               print the QEMU command line, one argument per line
                          (shell-quoted), and exit 0; touches no file or device
                          and checks no file's existence
  --print-measure         print the \`cloister measure\` command that computes
                          this VM's expected measurement, and exit 0
  -h, --help              this text

Exit status: 2 for bad input (missing option, malformed value, missing file
or a GPU not bound to vfio-pci), otherwise QEMU's.
EOF
}

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --vcpus) need_value "$@"; vcpus="$2"; shift 2 ;;
      --memory) need_value "$@"; memory="$2"; shift 2 ;;
      --firmware) need_value "$@"; firmware="$2"; shift 2 ;;
      --kernel) need_value "$@"; kernel="$2"; shift 2 ;;
      --initrd) need_value "$@"; initrd="$2"; shift 2 ;;
      --append) need_value "$@"; append="$2"; shift 2 ;;
      --root-image) need_value "$@"; root_image="$2"; shift 2 ;;
      --root-hash-image) need_value "$@"; root_hash_image="$2"; shift 2 ;;
      --model-image) need_value "$@"; model_image="$2"; shift 2 ;;
      --model-hash-image) need_value "$@"; model_hash_image="$2"; shift 2 ;;
      --host-config) need_value "$@"; host_config="$2"; shift 2 ;;
      --gpu) need_value "$@"; gpus+=("$2"); shift 2 ;;
      --port) need_value "$@"; port="$2"; shift 2 ;;
      --qemu) need_value "$@"; qemu="$2"; shift 2 ;;
      --dry-run) dry_run=1; shift ;;
      --print-measure) print_measure=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *)
        if ! platform_option "$@"; then die "unknown option '$1' (see --help)"; fi
        shift "$shifted"
        ;;
    esac
  done
}

check_args() {
  local opt var
  for opt in vcpus memory firmware kernel initrd append root-image root-hash-image \
    model-image model-hash-image host-config; do
    var="${opt//-/_}"
    [ -n "${!var}" ] || die "--$opt is required (see --help)"
  done
  # QEMU reads commas in option values as separators.
  for opt in firmware kernel initrd root_image root_hash_image model_image model_hash_image host_config; do
    [[ "${!opt}" != *,* ]] || die "--${opt//_/-} path must not contain a comma: '${!opt}'"
  done
  [[ "$vcpus" =~ ^[1-9][0-9]{0,3}$ ]] || die "--vcpus must be a number from 1 to 9999, not '$vcpus'"
  [[ "$memory" =~ ^[1-9][0-9]*[MG]$ ]] || die "--memory must be a size like 128G or 65536M, not '$memory'"
  [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$port" -le 65535 ] || die "--port must be a TCP port (1-65535), not '$port'"
  [[ "$append" == *cloister.root_verity=* ]] || die "--append has no cloister.root_verity= (use the command line build.sh printed)"
  [[ "$append" == *cloister.model_verity=* ]] || die "--append has no cloister.model_verity= (use the line model.sh printed)"
  local i
  for i in "${!gpus[@]}"; do
    [[ "${gpus[$i]}" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] ||
      die "--gpu '${gpus[$i]}' is not a full PCI address like 0000:41:00.0 (see lspci -D)"
    gpus[$i]="${gpus[$i],,}"
  done
}

# The checks that look at the machine; skipped by --dry-run and --print-measure.
check_host() {
  local f
  for f in "$firmware" "$kernel" "$initrd" "$root_image" "$root_hash_image" \
    "$model_image" "$model_hash_image" "$host_config"; do
    [ -f "$f" ] && [ -r "$f" ] || die "no readable file '$f'"
  done
  local g driver
  for g in "${gpus[@]}"; do
    [ -e "/sys/bus/pci/devices/$g" ] || die "no PCI device $g"
    driver="$(basename "$(readlink "/sys/bus/pci/devices/$g/driver" 2>/dev/null || echo none)")"
    [ "$driver" = vfio-pci ] || die "GPU $g is bound to '$driver', not vfio-pci (docs/provider-guide.md)"
  done
}

# virtio devices go through the guest's bounce buffers (iommu_platform),
# as a confidential guest's devices must.
virtio_opts="disable-legacy=on,iommu_platform=on"

common_args() {
  args+=(-accel kvm -nodefaults -no-user-config -display none -monitor none -serial stdio)
  args+=(-smp "$vcpus" -m "$memory")
  args+=(-kernel "$kernel" -initrd "$initrd" -append "$append")
  # The host's settings, read by the guest's cloister-host-config.service.
  args+=(-fw_cfg "name=opt/dev.cloister/host,file=$host_config")
  # Disks: read-only, found in the guest by serial; dm-verity checks them.
  local spec name file
  for spec in "cloister-root=$root_image" "cloister-root-hash=$root_hash_image" \
    "cloister-model=$model_image" "cloister-model-hash=$model_hash_image"; do
    name="${spec%%=*}"
    file="${spec#*=}"
    args+=(-drive "if=none,id=$name,file=$file,format=raw,readonly=on")
    args+=(-device "virtio-blk-pci,drive=$name,serial=$name,$virtio_opts")
  done
  # User-mode network: the guest (10.0.2.15) reaches nothing (restrict=on);
  # only the forwarded port comes in.
  args+=(-netdev "user,id=net0,restrict=on,hostfwd=tcp::$port-10.0.2.15:7070")
  args+=(-device "virtio-net-pci,netdev=net0,romfile=,$virtio_opts")
  # GPUs: each behind its own PCIe root port; the firmware gets a 256 GiB
  # 64-bit MMIO window for the H100/H200's large BARs.
  if [ "${#gpus[@]}" -gt 0 ]; then
    args+=(-fw_cfg "name=opt/ovmf/X-PciMmio64Mb,string=262144")
  fi
  local i
  for i in "${!gpus[@]}"; do
    args+=(-device "pcie-root-port,id=gpu-port$i,bus=pcie.0,chassis=$((i + 1))")
    args+=(-device "vfio-pci,host=${gpus[$i]},bus=gpu-port$i")
  done
}

# Shell quoting that leaves ordinary words alone: stable, readable output
# that a shell reads back as the same arguments.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@+%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

main() {
  parse_args "$@"
  check_args
  if [ "$print_measure" -eq 1 ]; then
    local m=()
    platform_measure
    local a sep=""
    for a in "${m[@]}"; do printf '%s%s' "$sep" "$(quote "$a")"; sep=" "; done
    printf '\n'
    exit 0
  fi
  args=("$qemu")
  platform_args
  common_args
  if [ "$dry_run" -eq 1 ]; then
    local a
    for a in "${args[@]}"; do quote "$a"; printf '\n'; done
    exit 0
  fi
  check_host
  exec "${args[@]}"
}
