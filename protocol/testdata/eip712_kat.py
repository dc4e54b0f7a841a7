# Independent EIP-712 known-answer values for cloister-protocol's UsageReceipt.
# Uses eth_account (PyPI, 0.14.0) for the full typed-data signature and
# pycryptodome's keccak to hand-compute type hash, domain separator and struct hash.
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_abi import encode
from Crypto.Hash import keccak

def k(b):
    h = keccak.new(digest_bits=256); h.update(b); return h.digest()

PRIV = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
acct = Account.from_key(PRIV)
msg = {
    "requestId": bytes.fromhex("11" * 32),
    "nodeSigner": acct.address,
    "modelId": "smollm2-135m-instruct-q4_1",
    "promptTokens": 42,
    "completionTokens": 1337,
    "requestHash": bytes.fromhex("22" * 32),
    "responseHash": bytes.fromhex("33" * 32),
    "issuedAt": 1763700000,
}
types = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "UsageReceipt": [
        {"name": "requestId", "type": "bytes32"},
        {"name": "nodeSigner", "type": "address"},
        {"name": "modelId", "type": "string"},
        {"name": "promptTokens", "type": "uint64"},
        {"name": "completionTokens", "type": "uint64"},
        {"name": "requestHash", "type": "bytes32"},
        {"name": "responseHash", "type": "bytes32"},
        {"name": "issuedAt", "type": "uint64"},
    ],
}
for chain, contract in [(31337, "0x" + "00" * 20), (1, "0x5FbDB2315678afecb367f032d93F642f64180aa3")]:
    domain = {"name": "Cloister", "version": "1", "chainId": chain, "verifyingContract": contract}
    full = {"types": types, "primaryType": "UsageReceipt", "domain": domain, "message": msg}
    signable = encode_typed_data(full_message=full)
    signed = acct.sign_message(signable)
    # hand computation
    type_str = b"UsageReceipt(bytes32 requestId,address nodeSigner,string modelId,uint64 promptTokens,uint64 completionTokens,bytes32 requestHash,bytes32 responseHash,uint64 issuedAt)"
    type_hash = k(type_str)
    dom_type = k(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    dom_sep = k(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                       [dom_type, k(b"Cloister"), k(b"1"), chain, contract]))
    struct_hash = k(encode(["bytes32", "bytes32", "address", "bytes32", "uint64", "uint64", "bytes32", "bytes32", "uint64"],
                           [type_hash, msg["requestId"], msg["nodeSigner"], k(msg["modelId"].encode()),
                            msg["promptTokens"], msg["completionTokens"], msg["requestHash"], msg["responseHash"], msg["issuedAt"]]))
    digest = k(b"\x19\x01" + dom_sep + struct_hash)
    assert signable.header == dom_sep and signable.body == struct_hash, "eth_account and hand computation disagree"
    sig = signed.signature
    print(f"chain {chain} contract {contract}")
    print("  address      ", acct.address)
    print("  type_hash    ", type_hash.hex())
    print("  domain_sep   ", dom_sep.hex())
    print("  struct_hash  ", struct_hash.hex())
    print("  signing_hash ", digest.hex(), "(eth_account:", signed.message_hash.hex() == digest.hex(), ")")
    print("  signature    ", bytes(sig).hex())
