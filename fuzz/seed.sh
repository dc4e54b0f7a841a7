#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs built from the real test
# vectors in attestation/testdata/ (see its README.md). Safe to re-run: seeds
# are (over)written under fixed names, inputs the fuzzer added are kept.
# Needs: bash, coreutils (base64), xxd, jq, python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
td="$here/../attestation/testdata"
corpus="$here/corpus"
for tool in base64 xxd jq; do
  command -v "$tool" >/dev/null || { echo "seed.sh: $tool is required" >&2; exit 1; }
done

seed() { # seed <target> <name> <file>
  mkdir -p "$corpus/$1"
  cp "$3" "$corpus/$1/$2"
}

# --- raw evidence ------------------------------------------------------------
for dir in "$td"/tdx/*/ "$td"/sgx/*/; do
  [ -f "$dir/quote.bin" ] || continue
  name="$(basename "$(dirname "$dir")")-$(basename "$dir")"
  seed tdx_quote "$name.bin" "$dir/quote.bin"
  seed tdx_appraise "$name.bin" "$dir/quote.bin"
  seed tdx_collateral "$name.json" "$dir/collateral.json"
done
for dir in "$td"/snp/*/; do
  seed snp_report "$(basename "$dir").bin" "$dir/report.bin"
  seed snp_appraise "$(basename "$dir").bin" "$dir/report.bin"
done
for dir in "$td"/gpu/*/; do
  [ -f "$dir/attestation_report.bin" ] || continue
  seed gpu_report "$(basename "$dir").bin" "$dir/attestation_report.bin"
  seed gpu_appraise "$(basename "$dir").bin" "$dir/attestation_report.bin"
done

# --- AMD CRLs: the synthetic ones of the attestation tests (no genuine AMD
# CRL is in the vectors), DER and PEM ------------------------------------------
synthetic="$here/../attestation/tests/data"
seed snp_crl test-ark-crl.der "$synthetic/test-ark-crl.der"
seed snp_crl test-ark-crl.pem "$synthetic/test-ark-crl.pem"

# --- SEV-SNP host certificate tables (auxblob) --------------------------------
# GUID table: 24-byte entries {guid (RFC 4122 byte order), offset u32 LE,
# length u32 LE}, an all-zero entry, then the certificates (AMD GHCB spec).
python3 - "$td" "$corpus/snp_cert_table" <<'PY'
import os, struct, sys, uuid
td, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
guids = {"vcek": "63da758d-e664-4564-adc5-f4b93be8accd", "vlek": "a8074bc2-a25a-483e-aae6-39c045a0b8a1",
         "ask": "4ab7b379-bbac-4fe4-a02f-05aef327c782", "asvk": "4ab7b379-bbac-4fe4-a02f-05aef327c782",
         "ark": "c0b406a4-a803-4952-9743-3fb6014cd0ae"}
for name in sorted(os.listdir(os.path.join(td, "snp"))):
    d = os.path.join(td, "snp", name)
    certs = []
    for f in sorted(os.listdir(d)):
        stem = f.split(".")[0]
        if stem in guids:
            certs.append((uuid.UUID(guids[stem]).bytes, open(os.path.join(d, f), "rb").read()))
    offset = 24 * (len(certs) + 1)
    table, blobs = b"", b""
    for guid, data in certs:
        table += guid + struct.pack("<II", offset + len(blobs), len(data))
        blobs += data
    open(os.path.join(out, name + ".bin"), "wb").write(table + bytes(24) + blobs)
PY

# --- firmware for cloister-measure -----------------------------------------------
# The last 64 KiB of Debian's OVMF.fd (package ovmf) when it is installed: its
# footer table, SEV metadata and TDVF metadata all lie there; the firmware's
# own sections start outside it, which the parser must refuse cleanly.
if [ -f /usr/share/ovmf/OVMF.fd ]; then
  mkdir -p "$corpus/measure_firmware"
  tail -c 65536 /usr/share/ovmf/OVMF.fd > "$corpus/measure_firmware/ovmf-tail.bin"
fi

# --- simulated evidence ------------------------------------------------------
# There is no simulated test vector: this is `simulated::encode` output for
# measurement 01*48, report data 02*64 and the P-256 key 42*32 (valid signature).
simulated_hex='434c53494d5445450100000001010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202043ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388db5f62eb1927c409685b6874e09f7aaef75b06b0d5091f6bb0332bd5ef5c668ed54f0bdeec864855dfe4196265410285c1f8c873d7217464efc62067d70f18650'
mkdir -p "$corpus/simulated"
printf '%s' "$simulated_hex" | xxd -r -p > "$corpus/simulated/valid.bin"
head -c 200 "$corpus/simulated/valid.bin" > "$corpus/simulated/truncated.bin"

# --- evidence bundles ----------------------------------------------------------
mkdir -p "$corpus/bundle_json"
nonce='87d8e24ab336adaf0000000000000000000000000000000000000000000000aa'
identity='{"hpke_key_config":"AAEAAQ==","signer":"0x00000000000000000000000000000000000000aa",
  "model":{"id":"llama-3.1-8b","weights_sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
  "app":{"version":"0.1.0","git":"8e210fa"}}'
pem_of() { # a certificate file as PEM text
  if grep -q -- '-----BEGIN' "$1"; then cat "$1"; else
    printf -- '-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n' "$(base64 -w 64 "$1")"
  fi
}
gpu_json() { # the GPU reports as a bundle "gpu" array
  local out='[]' dir
  for dir in "$td"/gpu/*/; do
    [ -f "$dir/attestation_report.bin" ] || continue
    out="$(jq -c --arg r "$(base64 -w0 "$dir/attestation_report.bin")" \
      --rawfile c "$dir/cert_chain.pem" '. + [{report: $r, cert_chain: $c}]' <<<"$out")"
  done
  printf '%s' "$out"
}
bundle() { # bundle <name> <platform> <evidence file> <certs json> <gpu json>
  jq -n --arg p "$2" --arg ev "$(base64 -w0 "$3")" --argjson certs "$4" --argjson gpu "$5" \
    --argjson id "$identity" --arg nonce "$nonce" \
    '{version: 1, platform: $p, evidence: $ev, certs: $certs, gpu: $gpu, identity: $id, nonce: $nonce}' \
    > "$corpus/bundle_json/$1.json"
}
tdx_dir="$td/tdx/v4-uptodate-b0c06f-dcapqvl"
bundle tdx tdx "$tdx_dir/quote.bin" "$(jq -c '{tdx_collateral: .}' "$tdx_dir/collateral.json")" '[]'
bundle tdx-gpu tdx "$tdx_dir/quote.bin" "$(jq -c '{tdx_collateral: .}' "$tdx_dir/collateral.json")" "$(gpu_json)"
bundle tdx-no-collateral tdx "$tdx_dir/quote.bin" '{}' '[]'
sgx_dir="$td/sgx/v3-sgx-config-and-sw-hardening-dcapqvl"
bundle sgx tdx "$sgx_dir/quote.bin" "$(jq -c '{tdx_collateral: .}' "$sgx_dir/collateral.json")" '[]'
for dir in "$td"/snp/*/; do
  ask="$dir/ask.pem"; [ -f "$ask" ] || ask="$dir/asvk.pem"
  for vek in "$dir"/vcek.* "$dir"/vlek.*; do [ -f "$vek" ] && break; done
  certs="$(jq -n --rawfile ark "$dir/ark.pem" --arg ask "$(pem_of "$ask")" --arg vek "$(pem_of "$vek")" \
    --arg k "$(basename "${vek%.*}")" --arg a "$(basename "${ask%.*}")" \
    '{ark: $ark} + {($a): $ask} + {($k): $vek}')"
  bundle "snp-$(basename "$dir")" sev-snp "$dir/report.bin" "$certs" '[]'
done
bundle simulated simulated "$corpus/simulated/valid.bin" '{}' '[]'
bundle simulated-gpu simulated "$corpus/simulated/valid.bin" '{}' "$(gpu_json)"

# --- policies --------------------------------------------------------------------
mkdir -p "$corpus/policy_toml"
printf '' > "$corpus/policy_toml/empty.toml"
cat > "$corpus/policy_toml/full.toml" <<'TOML'
[tdx]
accept_tcb = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"]
grace_until = "2026-01-01T00:00:00Z"
allow_debug = false
mrtd = ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"]
rtmr0 = ["0x111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"]
rtmr1 = []
rtmr2 = ["222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222222"]
rtmr3 = ["333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333"]
mrseam = ["444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444"]

[sev_snp]
allow_debug = false
allow_migration_agent = false
allow_smt = true
max_vmpl = 3
measurement = ["555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"]
host_data = ["6666666666666666666666666666666666666666666666666666666666666666"]
min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115, fmc = 0 }

[gpu]
required = true

[simulated]
allow = false

[models]
weights_sha256 = ["7777777777777777777777777777777777777777777777777777777777777777"]
TOML
cat > "$corpus/policy_toml/toml-datetime.toml" <<'TOML'
[tdx]
accept_tcb = ["UpToDate", "OutOfDate"]
grace_until = 2026-01-01T00:00:00+02:00
TOML
cat > "$corpus/policy_toml/revoked.toml" <<'TOML'
tdx.accept_tcb = ["Revoked"]
TOML
cat > "$corpus/policy_toml/dev.toml" <<'TOML'
[simulated]
allow = true
[sev_snp]
allow_debug = true
max_vmpl = 0
TOML

# --- request filter: OpenAI request bodies as SDKs send them, and attacks ----
mkdir -p "$corpus/request_filter"
rf() { printf '%s' "$2" > "$corpus/request_filter/$1.json"; }
rf chat '{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.7,"max_tokens":64}'
rf chat-stream '{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true},"user":"u"}'
rf chat-everything '{"model":"m","messages":[{"role":"user","content":"x","name":"a"}],"top_p":1,"top_k":5,"min_p":0.1,"presence_penalty":0,"frequency_penalty":1,"repetition_penalty":1.1,"stop":["a","b"],"n":1,"logprobs":true,"top_logprobs":2,"logit_bias":{"1":-100},"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"},"strict":true}},"enable_thinking":false,"max_completion_tokens":8}'
rf completion '{"model":"m","prompt":"once","max_tokens":8,"echo":false,"best_of":1,"logprobs":1,"suffix":"."}'
rf image-url '{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"http://127.0.0.1/x.png"}}]}]}'
rf file-url '{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]}'
rf web-search '{"model":"m","messages":[{"role":"user","content":"x"}],"web_search_options":{}}'
rf tools '{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"1"}],"tools":[],"tool_choice":"auto"}'
rf n2 '{"model":"m","prompt":"x","n":2,"best_of":3}'

for dir in "$corpus"/*/; do
  printf '%-16s %3d seeds\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"
done
