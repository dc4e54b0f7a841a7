//! A bounds-checked parser for the Oblivious HTTP key configuration
//! (RFC 9458 section 3) that a client seals to, and the suite policy.
//!
//! We parse it ourselves before handing it to the `ohttp` crate because that
//! crate silently drops suites it does not implement and then panics when none
//! is left, and because it would pick the first suite offered whatever it is.

use crate::error::KeyConfigError;

/// KEM DHKEM(X25519, HKDF-SHA256).
pub(crate) const KEM_X25519: u16 = 0x0020;
/// KDF HKDF-SHA256.
pub(crate) const KDF_HKDF_SHA256: u16 = 0x0001;
/// AEAD AES-128-GCM.
pub(crate) const AEAD_AES_128_GCM: u16 = 0x0001;
/// Length of the response nonce: max(Nn, Nk) = max(12, 16) for AES-128-GCM.
pub(crate) const RESPONSE_NONCE_LEN: usize = 16;
/// Length of an X25519 public key and of an encapsulated key.
pub(crate) const X25519_LEN: usize = 32;

/// The only suite sealed to and accepted: HKDF-SHA256 with AES-128-GCM.
///
/// DESIGN.md section 4 asks for AES-256-GCM or ChaCha20-Poly1305, but with
/// `ohttp` 0.8.0 neither works for chunked responses: its pure-Rust HPKE
/// backend does not implement AES-256-GCM, and its chunked-response reader
/// panics for any AEAD with a 32-byte key (it reads the max(Nn, Nk) = 32-byte
/// response nonce into a 16-byte buffer; see the test
/// `ohttp_chunked_response_reader_panics_for_32_byte_keys`). AES-128-GCM is the
/// suite that crate's own tests use; its 128-bit security matches X25519's.
pub(crate) const SUITE: CipherSuite = CipherSuite {
    kdf: KDF_HKDF_SHA256,
    aead: AEAD_AES_128_GCM,
};

/// A (KDF, AEAD) pair by IANA HPKE identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CipherSuite {
    pub kdf: u16,
    pub aead: u16,
}

/// A parsed key configuration that passed this crate's policy: KEM X25519 and
/// at least the HKDF-SHA256 / AES-128-GCM suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfigInfo {
    pub key_id: u8,
    pub public_key: [u8; X25519_LEN],
    /// Every suite offered, supported or not, in the order offered.
    pub suites: Vec<CipherSuite>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyConfigError> {
        let rest = self.bytes.get(self.offset..).unwrap_or_default();
        let (head, _) = rest
            .split_at_checked(n)
            .ok_or_else(|| KeyConfigError::Truncated {
                offset: self.offset,
                needed: n.saturating_sub(rest.len()),
            })?;
        self.offset += n;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, KeyConfigError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, KeyConfigError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], KeyConfigError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

impl KeyConfigInfo {
    /// Parses one encoded key configuration (not a length-prefixed list) and
    /// checks it against the policy. Trailing bytes are rejected.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyConfigError> {
        let mut r = Reader { bytes, offset: 0 };
        let key_id = r.u8()?;
        let kem = r.u16()?;
        if kem != KEM_X25519 {
            return Err(KeyConfigError::UnsupportedKem { kem });
        }
        let public_key = r.array::<X25519_LEN>()?;
        let len = usize::from(r.u16()?);
        if len == 0 || len % 4 != 0 {
            return Err(KeyConfigError::BadSuiteList { len });
        }
        let mut list = Reader {
            bytes: r.take(len)?,
            offset: 0,
        };
        let mut suites = Vec::with_capacity(len / 4);
        for _ in 0..len / 4 {
            suites.push(CipherSuite {
                kdf: list.u16()?,
                aead: list.u16()?,
            });
        }
        let extra = bytes.len() - r.offset;
        if extra != 0 {
            return Err(KeyConfigError::TrailingBytes { extra });
        }
        if !suites.contains(&SUITE) {
            return Err(KeyConfigError::NoSupportedSuite);
        }
        Ok(Self {
            key_id,
            public_key,
            suites,
        })
    }

    /// The configuration re-encoded with only the suite we seal with, so that
    /// the `ohttp` crate (which takes the first suite) picks that one.
    pub(crate) fn encode_with_our_suite(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 + X25519_LEN + 2 + 4);
        out.push(self.key_id);
        out.extend_from_slice(&KEM_X25519.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&SUITE.kdf.to_be_bytes());
        out.extend_from_slice(&SUITE.aead.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(suites: &[(u16, u16)]) -> Vec<u8> {
        let mut out = vec![7, 0x00, 0x20];
        out.extend_from_slice(&[0xab; 32]);
        out.extend_from_slice(&u16::try_from(suites.len() * 4).unwrap().to_be_bytes());
        for (kdf, aead) in suites {
            out.extend_from_slice(&kdf.to_be_bytes());
            out.extend_from_slice(&aead.to_be_bytes());
        }
        out
    }

    #[test]
    fn parses_and_reencodes_with_our_suite_only() {
        let bytes = config(&[(1, 3), (1, 1)]);
        let info = KeyConfigInfo::parse(&bytes).unwrap();
        assert_eq!(info.key_id, 7);
        assert_eq!(info.suites.len(), 2);
        assert_eq!(info.encode_with_our_suite(), config(&[(1, 1)]));
    }

    #[test]
    fn rejects_bad_configs() {
        // Only AES-256-GCM: ohttp 0.8.0 would panic on this one.
        let only_aes256 = config(&[(1, 2)]);
        assert_eq!(
            KeyConfigInfo::parse(&only_aes256),
            Err(KeyConfigError::NoSupportedSuite)
        );
        assert_eq!(
            KeyConfigInfo::parse(&config(&[(1, 3)])),
            Err(KeyConfigError::NoSupportedSuite)
        );
        let mut p256 = config(&[(1, 1)]);
        p256[2] = 0x10;
        assert_eq!(
            KeyConfigInfo::parse(&p256),
            Err(KeyConfigError::UnsupportedKem { kem: 0x0010 })
        );
        let good = config(&[(1, 1)]);
        for cut in 0..good.len() {
            assert!(matches!(
                KeyConfigInfo::parse(&good[..cut]),
                Err(KeyConfigError::Truncated { .. })
            ));
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            KeyConfigInfo::parse(&long),
            Err(KeyConfigError::TrailingBytes { extra: 1 })
        );
        let mut odd = good;
        odd[36] = 3;
        assert!(matches!(
            KeyConfigInfo::parse(&odd),
            Err(KeyConfigError::BadSuiteList { len: 3 })
        ));
    }
}
