#!/usr/bin/env bash
# Makes the synthetic certificates the negative tests use. They are not
# hardware evidence: each has one property a real chain must not have.
# Run from this directory; needs openssl.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl ecparam -name secp384r1 -genkey -noout -out "$tmp/key.pem"
# A CA certificate whose key usage omits keyCertSign: may not issue.
openssl req -x509 -new -key "$tmp/key.pem" -sha384 -days 36500 \
  -subj "/CN=Cloister test CA without keyCertSign" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,digitalSignature" \
  -out ca-without-keycertsign.pem
