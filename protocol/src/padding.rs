//! Response records: each sealed response chunk carries one record whose
//! length is rounded up to a bucket, so chunk sizes on the wire do not reveal
//! how long each token is (token-length side channels on streamed answers).
//!
//! ```text
//! record = data_len u32 BE || pad_len u32 BE || data || pad_len zero bytes
//! ```
//!
//! with `8 + data_len + pad_len` a multiple of the bucket (the sender's
//! choice; 256 by default). Records are inside the AEAD, so the padding is
//! authenticated; the reader still insists that padding bytes are zero. The
//! decrypted response is a byte stream, so records are self-delimiting and a
//! reader needs no knowledge of the bucket.

use thiserror::Error;

/// Bytes before a record's data.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// The default bucket: every chunk's plaintext is a multiple of 256 bytes.
pub const DEFAULT_PAD_BUCKET: usize = 256;
/// The largest bucket a sender may use.
pub const MAX_PAD_BUCKET: usize = 64 * 1024;

/// A record that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record declares {len} bytes, more than the {max}-byte maximum")]
    TooLarge { len: u64, max: usize },
    #[error("record padding holds a non-zero byte")]
    NonZeroPadding,
    #[error("the response ends inside a record ({buffered} bytes left over)")]
    Truncated { buffered: usize },
}

/// `data` as one record padded to a multiple of `bucket` (0 or 1: no padding).
pub(crate) fn encode_record(data: &[u8], bucket: usize) -> Vec<u8> {
    let unpadded = RECORD_HEADER_LEN + data.len();
    let bucket = bucket.clamp(1, MAX_PAD_BUCKET);
    let padded = unpadded.div_ceil(bucket).saturating_mul(bucket);
    let pad = padded - unpadded;
    let mut out = Vec::with_capacity(padded);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(pad).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(padded, 0);
    out
}

/// Splits a decrypted byte stream into records and returns their data.
#[derive(Debug, Default)]
pub(crate) struct RecordReader {
    buf: Vec<u8>,
    max_record: usize,
}

impl RecordReader {
    /// Records up to `max_record` bytes are accepted.
    pub(crate) fn new(max_record: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_record,
        }
    }

    /// Adds decrypted bytes; appends the data of every completed record to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0usize;
        loop {
            let rest = self.buf.get(at..).unwrap_or_default();
            let Some((header, after)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
                break;
            };
            let [d0, d1, d2, d3, p0, p1, p2, p3] = *header;
            let data_len = u64::from(u32::from_be_bytes([d0, d1, d2, d3]));
            let pad_len = u64::from(u32::from_be_bytes([p0, p1, p2, p3]));
            let total = RECORD_HEADER_LEN as u64 + data_len + pad_len;
            if total > self.max_record as u64 {
                return Err(RecordError::TooLarge {
                    len: total,
                    max: self.max_record,
                });
            }
            let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let (data_len, pad_len) = (as_usize(data_len), as_usize(pad_len));
            let Some(record) = after.get(..data_len + pad_len) else {
                break;
            };
            let (data, pad) = record.split_at(data_len);
            if pad.iter().any(|&b| b != 0) {
                return Err(RecordError::NonZeroPadding);
            }
            out.extend_from_slice(data);
            at += RECORD_HEADER_LEN + data_len + pad_len;
        }
        self.buf.drain(..at);
        Ok(())
    }

    /// Fails if a partial record is left over.
    pub(crate) fn finish(&self) -> Result<(), RecordError> {
        match self.buf.len() {
            0 => Ok(()),
            buffered => Err(RecordError::Truncated { buffered }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_pad_to_the_bucket_and_read_back_in_any_split() {
        let a = encode_record(b"hello", 256);
        let b = encode_record(&[7; 300], 256);
        let c = encode_record(b"", 256);
        assert_eq!((a.len(), b.len(), c.len()), (256, 512, 256));
        assert_eq!(encode_record(b"hello", 0).len(), RECORD_HEADER_LEN + 5);
        let stream: Vec<u8> = [a, b, c].concat();
        for split in [1, 7, 256, 1000] {
            let mut reader = RecordReader::new(1 << 20);
            let mut out = Vec::new();
            for piece in stream.chunks(split) {
                reader.push(piece, &mut out).unwrap();
            }
            reader.finish().unwrap();
            let mut want = b"hello".to_vec();
            want.extend([7; 300]);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn refuses_nonzero_padding_oversize_and_truncation() {
        let mut record = encode_record(b"hi", 64);
        *record.last_mut().unwrap() = 1;
        let mut out = Vec::new();
        assert_eq!(
            RecordReader::new(1 << 20).push(&record, &mut out),
            Err(RecordError::NonZeroPadding)
        );
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            RecordReader::new(1 << 20).push(&huge, &mut out),
            Err(RecordError::TooLarge { .. })
        ));
        let mut reader = RecordReader::new(1 << 20);
        reader
            .push(&encode_record(b"hi", 64)[..10], &mut out)
            .unwrap();
        assert_eq!(
            reader.finish(),
            Err(RecordError::Truncated { buffered: 10 })
        );
    }
}
