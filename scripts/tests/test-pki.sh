#!/usr/bin/env bash
# Writes a throwaway test CA and a certificate for 127.0.0.1 signed by it
# (P-256, valid 2 days) into DIR: ca.pem, cert.pem, key.pem. Used by the
# TLS tests of the router (listener and https:// nodes). Needs openssl.
#
#   scripts/tests/test-pki.sh DIR
set -euo pipefail
dir=${1:?usage: $0 DIR}
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -days 2 -subj /CN=cloister-test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req "${ec[@]}" -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile leaf.ext -out cert.pem 2>/dev/null
rm -f leaf.csr leaf.ext ca.srl ca.key
