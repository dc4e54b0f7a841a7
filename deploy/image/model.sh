#!/usr/bin/env bash
# Builds the model volume: a squashfs holding the model under /model and its
# id in /model-id, and the volume's dm-verity hash tree and root hash.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/image/model.sh --model DIR --model-id ID [--out DIR]

Writes model.squashfs, model.verity and model.roothash to --out (default
deploy/image/out). The root hash goes on the kernel command line as
cloister.model_verity=HASH (build.sh does that), so the model is part of the
measurement; in the guest, cloister-models.service checks every block read
against it and mounts the volume read-only at /models.
The weights are stored uncompressed (they do not compress, and reads stay
fast); times are SOURCE_DATE_EPOCH (default: image.lock's), so the same model
gives the same root hash on any machine.
Needs: squashfs-tools, cryptsetup-bin (veritysetup; no root needed).
USAGE
}

here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
model=""
model_id=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="${2:?}"; shift 2 ;;
    --model-id) model_id="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "model.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "model.sh: $*" >&2; exit 2; }
[ -d "$model" ] || die "--model must be a directory"
[[ "$model_id" =~ ^[A-Za-z0-9._:-]{1,128}$ ]] || die "--model-id must be 1-128 of A-Z a-z 0-9 . _ : -"
epoch="${SOURCE_DATE_EPOCH:-$(sed -n 's/^SOURCE_DATE_EPOCH=//p' "$here/image.lock")}"

# Fixed dm-verity salt, the same as in the guest's /usr/lib/cloister/open-models.
MODEL_SALT=da4ef1432eab017e1ea82feb68c58b7debcdbbe1035fc78308d553db1537af65 # sha256("cloister-model-v1")

mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -r --no-preserve=ownership "$model" "$stage/model"
printf '%s\n' "$model_id" > "$stage/model-id"
chmod -R a+rX,go-w "$stage"

mksquashfs "$stage" "$out/model.squashfs" -noappend -noI -noD -noF -noX -b 1M \
  -all-root -reproducible -mkfs-time "$epoch" -all-time "$epoch" -quiet -no-progress
hash="$(veritysetup format --no-superblock --format=1 --hash=sha256 \
  --data-block-size=4096 --hash-block-size=4096 --salt="$MODEL_SALT" \
  "$out/model.squashfs" "$out/model.verity" | sed -n 's/^Root hash:[[:space:]]*//p')"
[[ "$hash" =~ ^[0-9a-f]{64}$ ]] || die "veritysetup gave no root hash"
echo "$hash" > "$out/model.roothash"
echo "cloister.model_verity=$hash"
