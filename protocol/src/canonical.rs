//! The sealed request's encoding must be canonical, so that its SHA-256 (the
//! receipt's `request_hash`) is a function of what the client sealed and
//! nothing a forwarder chose.
//!
//! A chunked-OHTTP request is `header (7) || enc (32) || chunks`, each chunk
//! `varint length || ciphertext` and the last `varint 0 || ciphertext` running
//! to the end. The AEAD fixes every chunk's ciphertext, order and finality,
//! but not how its length is written: `ohttp` 0.8.0 reads non-minimal varints
//! (a length 5 as `0x40 0x05`, `0x80 0 0 5`, ...) and so opens the same
//! plaintext from bodies with different hashes. The client's encoder always
//! writes the minimal form (RFC 9000 section 16), so we refuse any other
//! before decrypting. With that, every byte of the body is fixed by the
//! client: a router can drop or replay a body, never re-encode it.

use crate::error::NotSealedReason;

/// An AEAD tag; every chunk's ciphertext holds at least one.
const TAG_LEN: usize = 16;
/// Largest chunk ciphertext: 16 KiB of plaintext plus the tag.
const MAX_CHUNK_CIPHERTEXT: u64 = (1 << 14) + TAG_LEN as u64;

/// Checks the chunk structure after `offset` (header and encapsulated key):
/// minimal varints, chunk sizes within the chunked-OHTTP limits, a final
/// chunk present.
pub(crate) fn check_request_chunks(body: &[u8], offset: usize) -> Result<(), NotSealedReason> {
    let mut at = offset;
    loop {
        let rest = body.get(at..).unwrap_or_default();
        let Some(&first) = rest.first() else {
            return Err(NotSealedReason::NonCanonical {
                offset: at,
                problem: "the body ends before its final chunk",
            });
        };
        let width = 1usize << (first >> 6);
        let field = rest.get(..width).ok_or(NotSealedReason::NonCanonical {
            offset: at,
            problem: "a chunk length is cut off",
        })?;
        let mut value = u64::from(first & 0x3f);
        for byte in field.iter().skip(1) {
            value = (value << 8) | u64::from(*byte);
        }
        let minimal_width = match value {
            0..=0x3f => 1,
            0x40..=0x3fff => 2,
            0x4000..=0x3fff_ffff => 4,
            _ => 8,
        };
        if width != minimal_width {
            return Err(NotSealedReason::NonCanonical {
                offset: at,
                problem: "a chunk length is not in its shortest varint form",
            });
        }
        at += width;
        if value == 0 {
            let last = body.len().saturating_sub(at);
            if last < TAG_LEN {
                return Err(NotSealedReason::NonCanonical {
                    offset: at,
                    problem: "the final chunk is shorter than an AEAD tag",
                });
            }
            return Ok(());
        }
        if !(TAG_LEN as u64..=MAX_CHUNK_CIPHERTEXT).contains(&value) {
            return Err(NotSealedReason::NonCanonical {
                offset: at - width,
                problem: "a chunk length is outside the chunked-OHTTP limits",
            });
        }
        let len = usize::try_from(value).unwrap_or(usize::MAX);
        if body.len().saturating_sub(at) < len {
            return Err(NotSealedReason::NonCanonical {
                offset: at,
                problem: "a chunk is cut off",
            });
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_minimal_and_refuses_longer_forms() {
        let mut body = vec![0u8; 4];
        body.push(20);
        body.extend([1; 20]);
        body.push(0);
        body.extend([2; 16]);
        assert_eq!(check_request_chunks(&body, 4), Ok(()));

        let mut long = vec![0u8; 4];
        long.extend([0x40, 20]);
        long.extend([1; 20]);
        long.push(0);
        long.extend([2; 16]);
        assert!(matches!(
            check_request_chunks(&long, 4),
            Err(NotSealedReason::NonCanonical { offset: 4, .. })
        ));

        let mut final_long = vec![0u8; 4];
        final_long.extend([0x40, 0]);
        final_long.extend([2; 16]);
        assert!(check_request_chunks(&final_long, 4).is_err());

        assert!(
            check_request_chunks(&[0, 0, 0, 0, 20], 4).is_err(),
            "cut off"
        );
        assert!(
            check_request_chunks(&[0, 0, 0, 0], 4).is_err(),
            "no final chunk"
        );
    }
}
