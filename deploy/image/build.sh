#!/usr/bin/env bash
# Builds the Cloister CVM image from image.lock. See deploy/image/README.md.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: sudo DEBIAN_SNAPSHOT_MIRROR=URL deploy/image/build.sh --model DIR --model-id ID [--out DIR] [--payload FILE]

Builds, into --out (default deploy/image/out):
  vmlinuz, initrd.img        direct-boot kernel and initrd (measured)
  root.squashfs, root.verity read-only root file system and its dm-verity tree
  model.squashfs, model.verity, model.roothash   the model volume (model.sh)
  cmdline                    the kernel command line, with both root hashes
  SHA256SUMS                 digests of all of the above
Every package version, the snapshot date and SOURCE_DATE_EPOCH come from
image.lock; two builds from the same inputs give the same bytes.

Options:
  --model DIR      the model (a .gguf file's directory, or a directory with
                   config.json, tokenizer.json, *.safetensors)
  --model-id ID    the model id clients ask for (A-Z a-z 0-9 . _ : -)
  --out DIR        output directory (default deploy/image/out)
  --payload FILE   an already built `cloister` binary instead of building
                   it with Containerfile.payload (podman or docker)
  -h, --help       this text

Environment: DEBIAN_SNAPSHOT_MIRROR (required): a Debian snapshot mirror for
the date in image.lock, as a sources.list base URL.
Needs root and: mmdebstrap, squashfs-tools, cryptsetup-bin, and podman or
docker unless --payload is given.
USAGE
}

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$here/out"
model=""
model_id=""
payload=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?}"; shift 2 ;;
    --model-id) model_id="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --payload) payload="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "build.sh: $*" >&2; exit 2; }
[ -n "$model" ] && [ -n "$model_id" ] || die "--model and --model-id are required"
: "${DEBIAN_SNAPSHOT_MIRROR:?set DEBIAN_SNAPSHOT_MIRROR (see --help)}"
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap --mode=root works in a chroot)"

lock="$here/image.lock"
value() { sed -n "s/^$1=//p" "$lock"; }
SNAPSHOT="$(value SNAPSHOT)"
echo "build.sh: packages as of $SNAPSHOT"
SUITE="$(value SUITE)"
COMPONENTS="$(value COMPONENTS)"
RUST_IMAGE="$(value RUST_IMAGE)"
SOURCE_DATE_EPOCH="$(value SOURCE_DATE_EPOCH)"
export SOURCE_DATE_EPOCH
pinned() { awk -v k="$1" -v p="$2" '$1 == k && $2 == p { print $3 }' "$lock"; }

# Fixed dm-verity salt, the same as in the guest's
# overlay/etc/initramfs-tools/scripts/local-top/cloister-root-verity.
ROOT_SALT=d3043c47c40d94c7d37ea1f4f74f32c04717a1d1703b5872b183d5b552c06383 # sha256("cloister-root-v1")

mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. The payload: /usr/bin/cloister.
if [ -z "$payload" ]; then
  [[ "$RUST_IMAGE" == *@sha256:* ]] || die "image.lock's RUST_IMAGE must name the image by digest (…@sha256:…), not '$RUST_IMAGE'"
  engine="$(command -v podman || command -v docker)" || die "neither podman nor docker found (or pass --payload)"
  "$engine" build -f "$here/Containerfile.payload" --target payload \
    --build-arg "RUST_IMAGE=$RUST_IMAGE" \
    --build-arg "DEBIAN_SNAPSHOT_MIRROR=$DEBIAN_SNAPSHOT_MIRROR" \
    --build-arg "CUDA_TOOLKIT_VERSION=$(pinned builder nvidia-cuda-toolkit)" \
    --build-arg "CUDA_GCC_VERSION=$(pinned builder nvidia-cuda-toolkit-gcc)" \
    --build-arg "LIBCUDA_VERSION=$(pinned builder libcuda1)" \
    --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" \
    --output "type=local,dest=$work/payload" "$repo"
  payload="$work/payload/cloister"
fi
[ -x "$payload" ] || die "no executable payload at $payload"

# 2. The root file system, with exactly the locked versions.
includes=()
while read -r kind name; do
  [ "$kind" = runtime ] || [ "$kind" = build ] || continue
  includes+=("$name=$(pinned deb "$name")")
done < "$here/packages.txt"
awk '$1 == "deb" { print $2 "=" $3 }' "$lock" | sort > "$work/expected"

rootfs="$work/rootfs"
# The guest's units (deploy/systemd holds the router's too: not these).
units="cloister-enclave.service cloister-models.service cloister-host-config.service"
units="$units cloister-nvidia-persistenced.service cloister-gpu-ready.service"
# The overlay goes in with cp -r, not -a: its files become root's, and
# /etc and /usr keep their modes.
mmdebstrap --variant=minbase --mode=root --format=directory \
  --components="${COMPONENTS// /,}" \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/{doc,man,info,locale}/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --include="$(IFS=,; echo "${includes[*]}")" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package}=\${Version}\n' | sort > '$work/installed'" \
  --customize-hook="cp -r '$here/overlay/.' \"\$1/\"" \
  --customize-hook="install -m 0755 '$payload' \"\$1/usr/bin/cloister\"" \
  --customize-hook="cd '$repo/deploy/systemd' && cp $units \"\$1/etc/systemd/system/\"" \
  --customize-hook="chroot \"\$1\" sh -c '
      set -e
      systemd-sysusers
      mkdir -p /models
      systemctl enable nftables.service systemd-networkd.service cloister-enclave.service
      # No login anywhere: the console belongs to the host.
      systemctl mask getty@.service serial-getty@.service console-getty.service \
        emergency.service rescue.service debug-shell.service nvidia-persistenced.service
      passwd -l root
      update-initramfs -u -k all
      # Files that record when or where the build ran.
      rm -rf /var/lib/dkms/*/*/build /var/log/* /var/cache/* /var/lib/apt/lists/*
      rm -f /var/lib/dpkg/*-old /var/cache/debconf/*-old /var/lib/systemd/random-seed
      : > /etc/machine-id'" \
  "$SUITE" "$rootfs" "deb $DEBIAN_SNAPSHOT_MIRROR $SUITE $COMPONENTS"

if ! diff -u "$work/expected" "$work/installed" > "$work/lock.diff"; then
  cat "$work/lock.diff" >&2
  die "installed packages differ from image.lock (wrong snapshot mirror, or run lock.sh)"
fi

# 3. Kernel and initrd for direct boot.
cp "$(ls "$rootfs"/boot/vmlinuz-* | sort | tail -1)" "$out/vmlinuz"
cp "$(ls "$rootfs"/boot/initrd.img-* | sort | tail -1)" "$out/initrd.img"
config="$(ls "$rootfs"/boot/config-* | sort | tail -1)"
for opt in CONFIG_TSM_REPORTS CONFIG_INTEL_TDX_GUEST CONFIG_TDX_GUEST_DRIVER CONFIG_SEV_GUEST \
  CONFIG_AMD_MEM_ENCRYPT CONFIG_DM_VERITY CONFIG_FW_CFG_SYSFS; do
  grep -Eq "^$opt=(y|m)$" "$config" || die "the image's kernel lacks $opt"
done
rm -rf "$rootfs/boot"/{vmlinuz,initrd.img,System.map}-* "$rootfs/boot/config-"*

# 4. Root file system: squashfs with fixed times, then its verity tree.
mksquashfs "$rootfs" "$out/root.squashfs" -noappend -comp zstd -reproducible \
  -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" -quiet -no-progress
root_hash="$(veritysetup format --no-superblock --format=1 --hash=sha256 \
  --data-block-size=4096 --hash-block-size=4096 --salt="$ROOT_SALT" \
  "$out/root.squashfs" "$out/root.verity" | sed -n 's/^Root hash:[[:space:]]*//p')"
[[ "$root_hash" =~ ^[0-9a-f]{64}$ ]] || die "veritysetup gave no root hash"

# 5. The model volume and the command line that names both hashes.
"$here/model.sh" --model "$model" --model-id "$model_id" --out "$out"
echo "console=ttyS0 panic=30 ro root=/dev/mapper/root rootfstype=squashfs ipv6.disable=1 cloister.root_verity=$root_hash cloister.model_verity=$(cat "$out/model.roothash")" \
  > "$out/cmdline"

(cd "$out" && sha256sum vmlinuz initrd.img root.squashfs root.verity model.squashfs model.verity cmdline > SHA256SUMS)
cat "$out/SHA256SUMS"
echo "kernel command line: $(cat "$out/cmdline")"
