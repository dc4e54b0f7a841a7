#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Usage receipts: round trips, tampering, and known answers computed
//! independently with Python (see testdata/eip712_kat.py and its output
//! testdata/eip712_kat.txt: eth-account 0.14.0 for the typed-data signature,
//! pycryptodome keccak for the hand-computed type hash, domain separator and
//! struct hash; the script asserts both agree).

use alloy_primitives::{Address, B256, FixedBytes, U256, address, b256, hex, keccak256};
use cloister_protocol::{
    ExpectedReceipt, NodeKeys, ReceiptDomain, ReceiptError, SignatureFault, SignedReceipt,
    UsageReceipt,
};

fn sample(node: &NodeKeys) -> UsageReceipt {
    UsageReceipt {
        request_id: [0x11; 32].into(),
        node_signer: node.signer_address(),
        model_id: "smollm2-135m-instruct-q4_1".into(),
        prompt_tokens: 42,
        completion_tokens: 1337,
        request_hash: [0x22; 32].into(),
        response_hash: [0x33; 32].into(),
        issued_at: 1_763_700_000,
    }
}

fn expected(r: &UsageReceipt) -> ExpectedReceipt {
    ExpectedReceipt {
        request_hash: r.request_hash,
        response_hash: r.response_hash,
    }
}

#[test]
fn sign_json_parse_recover() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let signed = node.sign_receipt(sample(&node), &domain).unwrap();
    let json = serde_json::to_string(&signed).unwrap();
    let parsed: SignedReceipt = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, signed);
    assert_eq!(
        parsed.recover_signer(&domain).unwrap(),
        node.signer_address()
    );
    parsed
        .verify(&domain, node.signer_address(), &expected(&parsed.receipt))
        .unwrap();

    // The JSON form: EIP-712 member names, 0x-hex bytes, decimal numbers.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let r = &value["receipt"];
    assert_eq!(r["requestId"], format!("0x{}", "11".repeat(32)));
    assert_eq!(r["promptTokens"], 42);
    assert_eq!(r["completionTokens"], 1337);
    assert_eq!(r["issuedAt"], 1_763_700_000u64);
    let sig = value["signature"].as_str().unwrap();
    assert_eq!(sig.len(), 2 + 130);
    assert!(sig.ends_with("1b") || sig.ends_with("1c"), "v is 27 or 28");
}

#[test]
fn unknown_json_fields_are_rejected() {
    let node = NodeKeys::generate().unwrap();
    let signed = node
        .sign_receipt(sample(&node), &ReceiptDomain::default())
        .unwrap();
    let mut value = serde_json::to_value(&signed).unwrap();
    value["receipt"]["price"] = 5.into();
    assert!(serde_json::from_value::<SignedReceipt>(value).is_err());
}

#[test]
fn any_altered_field_changes_the_signer() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let signed = node.sign_receipt(sample(&node), &domain).unwrap();
    let alterations: Vec<fn(&mut UsageReceipt)> = vec![
        |r| r.request_id.0[0] ^= 1,
        |r| r.node_signer = Address::repeat_byte(0x44),
        |r| r.model_id.push('x'),
        |r| r.prompt_tokens += 1,
        |r| r.completion_tokens -= 1,
        |r| r.request_hash.0[31] ^= 1,
        |r| r.response_hash.0[5] ^= 0x80,
        |r| r.issued_at += 1,
    ];
    for (i, alter) in alterations.iter().enumerate() {
        let mut bad = signed.clone();
        alter(&mut bad.receipt);
        match bad.recover_signer(&domain) {
            Ok(a) => assert_ne!(a, node.signer_address(), "field {i}"),
            Err(ReceiptError::BadSignature(_)) => {}
            Err(e) => panic!("field {i}: {e}"),
        }
        let err = bad
            .verify(&domain, node.signer_address(), &expected(&signed.receipt))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ReceiptError::WrongSigner { .. } | ReceiptError::BadSignature(_)
            ),
            "field {i}: {err}"
        );
    }
    // Another domain, too.
    let other = ReceiptDomain {
        chain_id: 1,
        ..domain
    };
    assert_ne!(
        signed.recover_signer(&other).unwrap(),
        node.signer_address()
    );
}

#[test]
fn verify_reports_what_is_wrong() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let signed = node.sign_receipt(sample(&node), &domain).unwrap();
    let good = expected(&signed.receipt);
    let someone = Address::repeat_byte(7);
    match signed.verify(&domain, someone, &good) {
        Err(ReceiptError::WrongSigner {
            expected,
            recovered,
        }) => {
            assert_eq!(expected, someone);
            assert_eq!(recovered, node.signer_address());
        }
        other => panic!("{other:?}"),
    }
    let wrong_request = ExpectedReceipt {
        request_hash: B256::ZERO,
        ..good
    };
    assert!(matches!(
        signed.verify(&domain, node.signer_address(), &wrong_request),
        Err(ReceiptError::RequestHashMismatch { .. })
    ));
    let wrong_response = ExpectedReceipt {
        response_hash: B256::ZERO,
        ..good
    };
    assert!(matches!(
        signed.verify(&domain, node.signer_address(), &wrong_response),
        Err(ReceiptError::ResponseHashMismatch { .. })
    ));
    let mut not_mine = sample(&node);
    not_mine.node_signer = someone;
    assert!(matches!(
        node.sign_receipt(not_mine, &domain),
        Err(ReceiptError::SignerFieldMismatch { .. })
    ));
}

#[test]
fn malformed_signatures_are_rejected() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let signed = node.sign_receipt(sample(&node), &domain).unwrap();

    let mut v0 = signed.clone();
    v0.signature.0[64] -= 27;
    assert!(matches!(
        v0.recover_signer(&domain),
        Err(ReceiptError::BadSignature(SignatureFault::InvalidV { .. }))
    ));

    // The malleable twin (n - s, flipped v) recovers the same key elsewhere;
    // here it is refused, as OpenZeppelin's ECDSA.recover refuses it.
    let n = U256::from_str_radix(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&signed.signature.0[32..64]);
    let mut high = signed.clone();
    high.signature.0[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    high.signature.0[64] = if signed.signature.0[64] == 27 { 28 } else { 27 };
    assert!(matches!(
        high.recover_signer(&domain),
        Err(ReceiptError::BadSignature(SignatureFault::HighS))
    ));

    let zero = SignedReceipt {
        signature: FixedBytes::from({
            let mut z = [0u8; 65];
            z[64] = 27;
            z
        }),
        ..signed
    };
    assert!(zero.recover_signer(&domain).is_err());
}

const KAT_ADDRESS: Address = address!("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");

fn kat_receipt() -> UsageReceipt {
    UsageReceipt {
        request_id: [0x11; 32].into(),
        node_signer: KAT_ADDRESS,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        prompt_tokens: 42,
        completion_tokens: 1337,
        request_hash: [0x22; 32].into(),
        response_hash: [0x33; 32].into(),
        issued_at: 1_763_700_000,
    }
}

#[test]
fn known_answers_from_eth_account() {
    assert_eq!(
        keccak256(UsageReceipt::EIP712_TYPE),
        b256!("48764f6da8e0673a3b585712bc28036fa5c025fff4caac4addf5ed3807c42970")
    );
    let receipt = kat_receipt();
    assert_eq!(
        receipt.struct_hash(),
        b256!("49264f8244d29f75edafde88254f82b18362f216a4c10f0670c3e313f29e6a84")
    );
    let cases = [
        (
            ReceiptDomain::default(),
            b256!("e1ae3ac943ad111d3b05820405e2affd47d017ee7eb6bbf4d237218c52da5098"),
            b256!("eeac3ed9e509dc494298a0eb0ca3bbd202415e7f3bac58d3a95cc13cc1ca05d1"),
            "296547a4bd2947b4debbf246b3128e8e802aded3b0bd0a47e18aad72457db2b4259c2acffb51a80b6e384bf8fe486c523b4638dc02316e104a59de9101eadf3f1c",
        ),
        (
            ReceiptDomain {
                chain_id: 1,
                verifying_contract: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            },
            b256!("16c00756468518f841631aee9f8c497d73f55bb676946f135c12b8a997493680"),
            b256!("65f68a40de951152c7e5b63b8856ce018f5444116cbaf3708fe1dec84e623093"),
            "80ee51ee65b216436803c26ca3a4e241171243d47a4a266a7aa1f5838485dc7777a48663a7f2ea1b4ae267c8206fa6cdb924a760ed343ec45b921a3ba4a8d8ea1b",
        ),
    ];
    for (domain, separator, signing_hash, signature) in cases {
        assert_eq!(domain.separator(), separator);
        assert_eq!(receipt.signing_hash(&domain), signing_hash);
        let signed = SignedReceipt {
            receipt: receipt.clone(),
            signature: FixedBytes::from_slice(&hex::decode(signature).unwrap()),
        };
        assert_eq!(signed.recover_signer(&domain).unwrap(), KAT_ADDRESS);
        signed
            .verify(&domain, KAT_ADDRESS, &expected(&receipt))
            .unwrap();

        // alloy's RFC 6979 signer gives eth_account's signature, byte for byte.
        use alloy_signer::SignerSync;
        let key = alloy_signer_local::PrivateKeySigner::from_bytes(&b256!(
            "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
        ))
        .unwrap();
        assert_eq!(key.address(), KAT_ADDRESS);
        let ours = key.sign_hash_sync(&signing_hash).unwrap();
        assert_eq!(hex::encode(ours.as_bytes()), signature);
    }
}
