#!/usr/bin/env bash
# The CVM's own scripts, outside a CVM:
#  - overlay/usr/lib/cloister/host-config: the host's (unmeasured) settings
#    are accepted only as the five known keys with well-formed values;
#    anything else (environment variables, unknown keys, junk) is refused
#    and nothing is written;
#  - overlay/usr/lib/cloister/open-models: refuses a missing or malformed
#    cloister.model_verity= before touching any device;
#  - model.sh: the same model gives the same volume and root hash from
#    another directory with other file times (reproducible);
#  - the dm-verity salts of build.sh/model.sh and of the guest scripts match.
# Needs: squashfs-tools, cryptsetup-bin (veritysetup, no root), coreutils.
set -euo pipefail
cd "$(dirname "$0")/../.."
overlay=deploy/image/overlay
failed=0
passed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

addr=0x00000000000000000000000000000000000000aa
payout=0xAbCdEf0123456789abcdef0123456789ABCDEF01
host_config() {  # input text -> exit status; output in $tmp/run/host.env
  rm -rf "$tmp/run"
  printf '%b' "$1" > "$tmp/host.conf"
  CLOISTER_HOST_CONFIG="$tmp/host.conf" CLOISTER_RUN_DIR="$tmp/run" sh "$overlay/usr/lib/cloister/host-config" 2>"$tmp/err"
}
accept() {
  local name="$1" input="$2" want="$3"
  if host_config "$input" && [ "$(cat "$tmp/run/host.env")" = "$(printf '%b' "$want")" ]; then ok "host-config accepts $name"
  else fail "host-config $name: $(cat "$tmp/err") $(cat "$tmp/run/host.env" 2>/dev/null)"; fi
}
refuse() {
  local name="$1" input="$2" want="$3"
  if host_config "$input"; then fail "host-config accepted $name"
  elif [ -e "$tmp/run/host.env" ]; then fail "host-config wrote host.env for $name"
  elif ! grep -q -- "$want" "$tmp/err"; then fail "host-config $name: message '$(cat "$tmp/err")' lacks '$want'"
  else ok "host-config refuses $name: $(cat "$tmp/err")"; fi
}
accept "a full file" "# provider 7\nchain_id=8453\nsettlement_contract=$addr\npayout_address=$payout\nprompt_price=100\ncompletion_price=300\n" \
  "CLOISTER_CHAIN_ID=8453\nCLOISTER_SETTLEMENT_CONTRACT=$addr\nCLOISTER_PROMPT_PRICE=100\nCLOISTER_COMPLETION_PRICE=300\nCLOISTER_PAYOUT_ADDRESS=$payout"
accept "the minimum, no final newline" "chain_id=1\nsettlement_contract=$addr" \
  "CLOISTER_CHAIN_ID=1\nCLOISTER_SETTLEMENT_CONTRACT=$addr\nCLOISTER_PROMPT_PRICE=0\nCLOISTER_COMPLETION_PRICE=0"
refuse "an environment variable" "chain_id=1\nsettlement_contract=$addr\nLD_PRELOAD=/models/x.so\n" "unknown key 'LD_PRELOAD'"
refuse "an enclave setting" "chain_id=1\nsettlement_contract=$addr\npad_bucket=0\n" "unknown key 'pad_bucket'"
refuse "a second flag in a value" "chain_id=1 --prefix-cache\nsettlement_contract=$addr\n" "chain_id must be a decimal"
refuse "a short address" "chain_id=1\nsettlement_contract=0x1234\n" "settlement_contract must be"
refuse "a non-hex payout address" "chain_id=1\nsettlement_contract=$addr\npayout_address=0xZZ00000000000000000000000000000000000000\n" "payout_address must be"
refuse "a negative price" "chain_id=1\nsettlement_contract=$addr\nprompt_price=-1\n" "prompt_price must be"
refuse "a carriage return" "chain_id=1\r\nsettlement_contract=$addr\n" "chain_id must be"
refuse "a line without =" "chain_id=1\nsettlement_contract=$addr\njunk\n" "expected key=value"
refuse "no chain id" "settlement_contract=$addr\n" "chain_id is required"
refuse "no settlement contract" "chain_id=1\n" "settlement_contract is required"
refuse "an oversized file" "chain_id=1\nsettlement_contract=$addr\n$(printf '#%.0s' $(seq 5000))\n" "at most 4096"
rm -rf "$tmp/run"
if CLOISTER_HOST_CONFIG="$tmp/none" CLOISTER_RUN_DIR="$tmp/run" sh "$overlay/usr/lib/cloister/host-config" 2>"$tmp/err"; then
  fail "host-config without input succeeded"; else ok "host-config without input: $(cat "$tmp/err")"; fi

open_models() {  # cmdline -> stderr in $tmp/err
  printf '%s\n' "$1" > "$tmp/cmdline"
  CLOISTER_CMDLINE="$tmp/cmdline" CLOISTER_MODEL_DATA="$tmp/no-disk" CLOISTER_MODEL_HASH="$tmp/no-disk" \
    CLOISTER_MODELS_DIR="$tmp/models" CLOISTER_RUN_DIR="$tmp/run" sh "$overlay/usr/lib/cloister/open-models" 2>"$tmp/err"
}
h64=82e65b365f5cb0ee12ef05acba6ba67e9f3aa060e56d2b57a2eb35a401c482ba
for case in "console=ttyS0|no valid cloister.model_verity=" \
  "cloister.model_verity=${h64^^}|no valid cloister.model_verity=" \
  "cloister.model_verity=${h64:0:63}|not 64 hex digits" \
  "cloister.model_verity=$h64|model disk $tmp/no-disk not found"; do
  line="${case%%|*}" want="${case#*|}"
  if open_models "$line"; then fail "open-models accepted '$line'"
  elif grep -qF -- "$want" "$tmp/err"; then ok "open-models refuses '$line': $(cat "$tmp/err")"
  else fail "open-models '$line': '$(cat "$tmp/err")' lacks '$want'"; fi
done

# model.sh twice: other directory, other file times, same bytes.
mkdir -p "$tmp/a/m" "$tmp/b"
printf '{"hidden_size":64}\n' > "$tmp/a/m/config.json"
head -c 300000 /dev/urandom > "$tmp/a/m/model.safetensors"
cp -r "$tmp/a/m" "$tmp/b/other-name"
touch -d 2001-01-01 "$tmp/b/other-name/config.json"
deploy/image/model.sh --model "$tmp/a/m" --model-id tiny --out "$tmp/o1" >/dev/null
deploy/image/model.sh --model "$tmp/b/other-name" --model-id tiny --out "$tmp/o2" >/dev/null
if cmp -s "$tmp/o1/model.squashfs" "$tmp/o2/model.squashfs" && cmp -s "$tmp/o1/model.verity" "$tmp/o2/model.verity" \
  && [ "$(cat "$tmp/o1/model.roothash")" = "$(cat "$tmp/o2/model.roothash")" ]; then
  ok "model.sh is reproducible (root hash $(cat "$tmp/o1/model.roothash"))"
else fail "model.sh gave different volumes for the same model"; fi
deploy/image/model.sh --model "$tmp/a/m" --model-id other --out "$tmp/o3" >/dev/null
if [ "$(cat "$tmp/o1/model.roothash")" != "$(cat "$tmp/o3/model.roothash")" ]; then ok "the model id changes the root hash"
else fail "the model id does not change the root hash"; fi

salt() { sed -n "s/^$1=\([0-9a-f]*\).*/\1/p" "$2"; }
r1="$(salt ROOT_SALT deploy/image/build.sh)"; r2="$(salt ROOT_SALT "$overlay/etc/initramfs-tools/scripts/local-top/cloister-root-verity")"
m1="$(salt MODEL_SALT deploy/image/model.sh)"; m2="$(salt MODEL_SALT "$overlay/usr/lib/cloister/open-models")"
if [ -n "$r1" ] && [ "$r1" = "$r2" ] && [ "$r1" = "$(printf cloister-root-v1 | sha256sum | cut -c1-64)" ]; then ok "root verity salt matches"; else fail "root verity salts differ: '$r1' '$r2'"; fi
if [ -n "$m1" ] && [ "$m1" = "$m2" ] && [ "$m1" = "$(printf cloister-model-v1 | sha256sum | cut -c1-64)" ]; then ok "model verity salt matches"; else fail "model verity salts differ: '$m1' '$m2'"; fi

echo "deploy-guest-scripts: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
