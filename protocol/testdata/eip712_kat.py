# Independent EIP-712 known-answer values for cloister-protocol's UsageReceipt
# and PayerAuthorization. Uses eth_account (PyPI, 0.14.0) for the full
# typed-data signature and pycryptodome's keccak to hand-compute type hash,
# domain separator and struct hash; the script asserts both agree.
import hashlib
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_abi import encode
from Crypto.Hash import keccak

def k(b):
    h = keccak.new(digest_bits=256); h.update(b); return h.digest()

PRIV = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
PAYER_PRIV = bytes.fromhex("0101010101010101010101010101010101010101010101010101010101010101")
acct = Account.from_key(PRIV)
payer = Account.from_key(PAYER_PRIV)
DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
receipt = {
    "requestId": bytes.fromhex("11" * 32),
    "nodeSigner": acct.address,
    "payer": payer.address,
    "modelId": "smollm2-135m-instruct-q4_1",
    "promptTokens": 42,
    "completionTokens": 1337,
    "promptPrice": 1000000000000,
    "completionPrice": 3000000000000,
    "requestHash": bytes.fromhex("22" * 32),
    "responseHash": bytes.fromhex("33" * 32),
    "issuedAt": 1763700000,
}
receipt_fields = [
    ("requestId", "bytes32"), ("nodeSigner", "address"), ("payer", "address"),
    ("modelId", "string"), ("promptTokens", "uint64"), ("completionTokens", "uint64"),
    ("promptPrice", "uint64"), ("completionPrice", "uint64"),
    ("requestHash", "bytes32"), ("responseHash", "bytes32"), ("issuedAt", "uint64"),
]
BODY = b'{"model":"smollm2","messages":[{"role":"user","content":"hi"}]}'
authorization = {
    "node": acct.address,
    "issuedAt": 1763700000,
    "bodyHash": hashlib.sha256(BODY).digest(),
}
authorization_fields = [("node", "address"), ("issuedAt", "uint64"), ("bodyHash", "bytes32")]

def struct_hash(name, fields, msg):
    type_str = (name + "(" + ",".join(f"{t} {n}" for n, t in fields) + ")").encode()
    values, abi = [k(type_str)], ["bytes32"]
    for n, t in fields:
        v = msg[n]
        if t == "string":
            values.append(k(v.encode())); abi.append("bytes32")
        else:
            values.append(v); abi.append(t)
    return type_str, k(type_str), k(encode(abi, values))

def show(name, fields, msg, key, chain, contract):
    domain = {"name": "Cloister", "version": "1", "chainId": chain, "verifyingContract": contract}
    types = {"EIP712Domain": DOMAIN_TYPE, name: [{"name": n, "type": t} for n, t in fields]}
    full = {"types": types, "primaryType": name, "domain": domain, "message": msg}
    signable = encode_typed_data(full_message=full)
    signed = key.sign_message(signable)
    type_str, type_hash, s_hash = struct_hash(name, fields, msg)
    dom_type = k(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    dom_sep = k(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                       [dom_type, k(b"Cloister"), k(b"1"), chain, contract]))
    digest = k(b"\x19\x01" + dom_sep + s_hash)
    assert signable.header == dom_sep and signable.body == s_hash, "eth_account and hand computation disagree"
    print(f"{name} chain {chain} contract {contract}")
    print("  type         ", type_str.decode())
    print("  signer       ", key.address)
    print("  type_hash    ", type_hash.hex())
    print("  domain_sep   ", dom_sep.hex())
    print("  struct_hash  ", s_hash.hex())
    print("  signing_hash ", digest.hex(), "(eth_account:", signed.message_hash.hex() == digest.hex(), ")")
    print("  signature    ", bytes(signed.signature).hex())

for chain, contract in [(31337, "0x" + "00" * 20), (1, "0x5FbDB2315678afecb367f032d93F642f64180aa3")]:
    show("UsageReceipt", receipt_fields, receipt, acct, chain, contract)
    show("PayerAuthorization", authorization_fields, authorization, payer, chain, contract)
print("payer address", payer.address, "body sha256", hashlib.sha256(BODY).hexdigest())
