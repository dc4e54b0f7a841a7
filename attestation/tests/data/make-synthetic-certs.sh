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

# A test ARK (RSA-4096, self-signed with RSASSA-PSS SHA-384 as AMD signs),
# a test ASK it issued, and a CRL it signed that revokes serial 0x0bad:
# the revocation check's own tests (AMD's real ARK is pinned, so these can
# only reach the CRL code through its internal entry point).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out "$tmp/ark.key" 2>/dev/null
pss=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384)
openssl req -x509 -new -key "$tmp/ark.key" -sha384 "${pss[@]}" -days 36500 \
  -subj "/CN=Cloister test ARK" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out test-ark.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/ask.key" 2>/dev/null
openssl req -new -key "$tmp/ask.key" -subj "/CN=Cloister test ASK" -out "$tmp/ask.csr"
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n' > "$tmp/ask.ext"
openssl x509 -req -in "$tmp/ask.csr" -CA test-ark.pem -CAkey "$tmp/ark.key" -set_serial 0x0bad \
  -sha384 "${pss[@]}" -days 36500 -extfile "$tmp/ask.ext" -out test-ask-revoked.pem 2>/dev/null
openssl x509 -req -in "$tmp/ask.csr" -CA test-ark.pem -CAkey "$tmp/ark.key" -set_serial 0x0600d \
  -sha384 "${pss[@]}" -days 36500 -extfile "$tmp/ask.ext" -out test-ask-good.pem 2>/dev/null
mkdir -p "$tmp/ca/newcerts"
: > "$tmp/ca/index.txt"
printf 'R\t491231235959Z\t261201000000Z\t0BAD\tunknown\t/CN=Cloister test ASK\n' >> "$tmp/ca/index.txt"
cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/ca/index.txt
crlnumber = $tmp/ca/crlnumber
default_md = sha384
default_crl_days = 36500
CNF
echo 01 > "$tmp/ca/crlnumber"
openssl ca -config "$tmp/ca.cnf" -gencrl -keyfile "$tmp/ark.key" -cert test-ark.pem \
  "${pss[@]}" -out test-ark-crl.pem 2>/dev/null
openssl crl -in test-ark-crl.pem -outform DER -out test-ark-crl.der
