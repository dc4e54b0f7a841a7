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
        payer: PAYER_ADDRESS,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        prompt_tokens: 42,
        completion_tokens: 1337,
        prompt_price: 1_000_000_000_000,
        completion_price: 3_000_000_000_000,
        request_hash: [0x22; 32].into(),
        response_hash: [0x33; 32].into(),
        issued_at: 1_763_700_000,
    }
}

fn expected(r: &UsageReceipt) -> ExpectedReceipt {
    ExpectedReceipt {
        request_hash: r.request_hash,
        response_hash: r.response_hash,
        payer: r.payer,
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
const PAYER_ADDRESS: Address = address!("0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1");

fn kat_receipt() -> UsageReceipt {
    UsageReceipt {
        request_id: [0x11; 32].into(),
        node_signer: KAT_ADDRESS,
        payer: PAYER_ADDRESS,
        model_id: "smollm2-135m-instruct-q4_1".into(),
        prompt_tokens: 42,
        completion_tokens: 1337,
        prompt_price: 1_000_000_000_000,
        completion_price: 3_000_000_000_000,
        request_hash: [0x22; 32].into(),
        response_hash: [0x33; 32].into(),
        issued_at: 1_763_700_000,
    }
}

#[test]
fn known_answers_from_eth_account() {
    assert_eq!(
        keccak256(UsageReceipt::EIP712_TYPE),
        b256!("ccfd6409d2e61e35525fd08092105a58970cb5244019091ed665e4f04bdf24ef")
    );
    let receipt = kat_receipt();
    assert_eq!(
        receipt.struct_hash(),
        b256!("93da93dce91f13a759b64f063cfb743041c7d643ca948212475ad16878ae34a7")
    );
    let cases = [
        (
            ReceiptDomain::default(),
            b256!("e1ae3ac943ad111d3b05820405e2affd47d017ee7eb6bbf4d237218c52da5098"),
            b256!("b5ee431db6d8a380c69cd6f66517d4921f86ebfcc3dd2387906424d6d22c035e"),
            "ee9e50d7a86d515209d386bd5b4cb0f6ed8d853351c5804b82f76b277155f2767e0f1a78abea580e4f579118a723dfd6ef2558c63b594be7165408bd717c8f861c",
        ),
        (
            ReceiptDomain {
                chain_id: 1,
                verifying_contract: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            },
            b256!("16c00756468518f841631aee9f8c497d73f55bb676946f135c12b8a997493680"),
            b256!("4b798b8c407521df457e77189fe79fad052c6da7b44fa33ccbadf5d6bd3b0f28"),
            "bdb6d3f5bf93e81b3bceedc43f3e1890e2cc72f24011458f421ac5dc9c454dbf0da7a6622c3b0f0b412ece32bfa8348dd419e873b1add736979fa7705b17f5fe1c",
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

#[test]
fn payer_authorization_known_answers_from_eth_account() {
    use cloister_protocol::{PayerKey, RequestEnvelope, envelope};
    assert_eq!(
        keccak256(envelope::PAYER_AUTHORIZATION_TYPE),
        b256!("c6c937eeebbd01c98badcb58aa428e092083e0700f68404b9bba10b67bb4cd43")
    );
    let payer = PayerKey::from_secret(&[1; 32]).unwrap();
    assert_eq!(payer.address(), PAYER_ADDRESS);
    let body = br#"{"model":"smollm2","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let cases = [
        (
            ReceiptDomain::default(),
            b256!("4b4be4b485516d8b1be9dcc8492cbeb2de92e13aa9c284b1f58fc4f7f0adca6e"),
            "2f77e2972b9c47754dd35c72ac45411a61723272c9f859993a65d66f3b8bc6d745c0a40f8b237c7c77fe5fc942029c98579fd952db83a96bf284e1efa08236111b",
        ),
        (
            ReceiptDomain {
                chain_id: 1,
                verifying_contract: address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            },
            b256!("d4139bc20ddefe728e614cdd27c0d9352c341a3e5be5198951a6f0545cc1534f"),
            "5fe41fcc28d7f1bfed2e5a1d119b6ff042af5f8916104d6de1be0bfb9761e0c138ecc0bfaf293098199cf792cf038d79f4106a37deae1765a247b4567f30f8661b",
        ),
    ];
    for (domain, signing_hash, signature) in cases {
        assert_eq!(
            envelope::payer_authorization_digest(KAT_ADDRESS, 1_763_700_000, &body, &domain),
            signing_hash
        );
        let sealed = payer
            .envelope(KAT_ADDRESS, &domain, 1_763_700_000, body.clone())
            .unwrap();
        assert_eq!(hex::encode(sealed.payer_signature), signature);
        let parsed = RequestEnvelope::parse(&sealed.encode()).unwrap();
        parsed.verify_payer(KAT_ADDRESS, &domain).unwrap();
    }
}

#[test]
fn charge_is_tokens_times_prices() {
    let r = kat_receipt();
    assert_eq!(
        r.charge(),
        U256::from(42u64 * 1_000_000_000_000 + 1337 * 3_000_000_000_000)
    );
    let max = UsageReceipt {
        prompt_tokens: u64::MAX,
        prompt_price: u64::MAX,
        completion_tokens: u64::MAX,
        completion_price: u64::MAX,
        ..r
    };
    assert_eq!(
        max.charge(),
        U256::from(u64::MAX) * U256::from(u64::MAX) * U256::from(2u8)
    );
}

#[test]
fn a_receipt_billed_to_another_payer_is_refused() {
    let node = NodeKeys::generate().unwrap();
    let domain = ReceiptDomain::default();
    let signed = node.sign_receipt(sample(&node), &domain).unwrap();
    let mut want = expected(&signed.receipt);
    want.payer = Address::repeat_byte(0x42);
    assert!(matches!(
        signed.verify(&domain, node.signer_address(), &want),
        Err(ReceiptError::PayerMismatch { .. })
    ));
}
