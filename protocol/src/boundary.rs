//! Works around a bug in `ohttp` 0.8.0's chunked reader: when a chunk's
//! variable-length integer length (2, 4 or 8 bytes) is split across reads and
//! the source returns `Pending` in between, the reader re-parses its half-read
//! state as a zero length, i.e. as the final chunk, and the response then fails
//! to authenticate. So the opener holds back the bytes of a partial length
//! field until the whole field has arrived.
//!
//! Response layout (draft-ietf-ohai-chunked-ohttp): response nonce, then chunks
//! `varint length || ciphertext`, then `varint 0 || final ciphertext` running to
//! the end of the stream.

use crate::keyconfig::RESPONSE_NONCE_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Nonce { remaining: usize },
    Length,
    Body { remaining: u64 },
    Final,
}

/// Tracks where chunk boundaries fall in the response ciphertext.
#[derive(Debug)]
pub(crate) struct Boundary {
    next: Next,
}

impl Boundary {
    pub(crate) fn new() -> Self {
        Self {
            next: Next::Nonce {
                remaining: RESPONSE_NONCE_LEN,
            },
        }
    }

    /// How many leading bytes of `pending` (bytes not yet given to the reader)
    /// can be given now without splitting a length field.
    pub(crate) fn releasable(&mut self, pending: &[u8]) -> usize {
        let mut done = 0;
        loop {
            let rest = pending.get(done..).unwrap_or_default();
            if rest.is_empty() {
                return done;
            }
            match self.next {
                Next::Final => return pending.len(),
                Next::Nonce { remaining } => {
                    let n = remaining.min(rest.len());
                    done += n;
                    self.next = match remaining - n {
                        0 => Next::Length,
                        remaining => Next::Nonce { remaining },
                    };
                }
                Next::Body { remaining } => {
                    let n = remaining.min(u64::try_from(rest.len()).unwrap_or(u64::MAX));
                    done += usize::try_from(n).unwrap_or(usize::MAX);
                    self.next = match remaining - n {
                        0 => Next::Length,
                        remaining => Next::Body { remaining },
                    };
                }
                Next::Length => {
                    let Some(field) = rest.first().and_then(|b| rest.get(..1 << (b >> 6))) else {
                        return done;
                    };
                    done += field.len();
                    let mut value = [0u8; 8];
                    let start = 8 - field.len();
                    if let Some(dst) = value.get_mut(start..) {
                        dst.copy_from_slice(field);
                    }
                    let length = u64::from_be_bytes(value) & (u64::MAX >> (2 + 8 * start));
                    self.next = match length {
                        0 => Next::Final,
                        remaining => Next::Body { remaining },
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_length_fields() {
        let mut b = Boundary::new();
        let nonce = [0u8; RESPONSE_NONCE_LEN];
        assert_eq!(b.releasable(&nonce[..5]), 5);
        assert_eq!(b.releasable(&nonce[5..]), RESPONSE_NONCE_LEN - 5);
        // A 2-byte length (0x40 | 0x00, 0x50 = 80) arriving one byte at a time.
        assert_eq!(b.releasable(&[0x40]), 0);
        assert_eq!(b.releasable(&[0x40, 0x50]), 2);
        assert_eq!(b.releasable(&[7; 79]), 79);
        // The rest of the body, then a 1-byte length 3 and its body, then 3 of
        // the 4 bytes of a 4-byte length.
        assert_eq!(b.releasable(&[7, 0x03, 1, 2, 3, 0x80, 0x01, 0x00]), 5);
        // That length (0x10000) completed, then all but one byte of its body.
        let mut rest = vec![0x80, 0x01, 0x00, 0x00];
        rest.resize(4 + 0x10000 - 1, 9);
        assert_eq!(b.releasable(&rest), rest.len());
        assert_eq!(b.releasable(&[9, 0x00, 1, 2, 3]), 5);
        assert_eq!(b.releasable(&[4, 5]), 2);
    }
}
