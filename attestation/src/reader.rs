//! A bounds-checked reader over `&[u8]`.
//!
//! Every parser in this crate reads through [`Reader`]: a read past the end is
//! a [`Truncated`] error naming the field, never a panic, and the reader knows
//! its offset so parsers can record the byte spans that signatures cover.

use std::ops::Range;

/// A field could not be read because the input ended first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input ends inside {field}: it needs {needed} bytes at offset {offset}, {available} left")]
pub struct Truncated {
    /// The field being read.
    pub field: &'static str,
    /// Offset of the field in the whole input.
    pub offset: usize,
    /// Bytes the field needs.
    pub needed: usize,
    /// Bytes left in the input at that offset.
    pub available: usize,
}

/// Cursor over a byte slice that never reads out of bounds.
///
/// Offsets are always relative to the whole input, also for sub-readers, so
/// recorded spans index the bytes as received.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            pos: 0,
            end: input.len(),
        }
    }

    /// Offset of the next byte to read, in the whole input.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// The unread rest of this reader's window.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..self.end).unwrap_or_default()
    }

    /// Bytes left in this reader's window.
    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// The bytes of a span previously returned by [`Reader::take_span`].
    pub(crate) fn bytes(&self, span: &Range<usize>) -> &'a [u8] {
        self.input.get(span.clone()).unwrap_or_default()
    }

    /// Reads `n` bytes.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Truncated> {
        let span = self.take_span(n, field)?;
        Ok(self.bytes(&span))
    }

    /// Reads `n` bytes and returns their range in the whole input.
    pub(crate) fn take_span(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<Range<usize>, Truncated> {
        match self.pos.checked_add(n).filter(|&end| end <= self.end) {
            Some(end) => {
                let start = self.pos;
                self.pos = end;
                Ok(start..end)
            }
            None => Err(Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], Truncated> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Truncated> {
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    pub(crate) fn u16_le(&mut self, field: &'static str) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u24_le(&mut self, field: &'static str) -> Result<u32, Truncated> {
        let [a, b, c] = self.array(field)?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub(crate) fn u32_le(&mut self, field: &'static str) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64_le(&mut self, field: &'static str) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A reader over the next `n` bytes, which this reader skips. Reads
    /// through it cannot pass its end; its offsets stay whole-input offsets.
    pub(crate) fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, Truncated> {
        let span = self.take_span(n, field)?;
        Ok(Reader {
            input: self.input,
            pos: span.start,
            end: span.end,
        })
    }
}

/// Checks that everything after `offset` is zero padding.
///
/// Real TDX quotes and one real GPU report carry zero bytes after their
/// signature data; anything else there is an error.
pub(crate) fn zero_padding_only(bytes: &[u8]) -> Result<usize, usize> {
    match bytes.iter().position(|&b| b != 0) {
        None => Ok(bytes.len()),
        Some(first_nonzero) => Err(first_nonzero),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_fields_and_tracks_offsets() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let mut r = Reader::new(&data);
        assert_eq!(r.u16_le("a").unwrap(), 0x0201);
        assert_eq!(r.u24_le("b").unwrap(), 0x050403);
        assert_eq!(r.offset(), 5);
        assert_eq!(r.take_span(2, "c").unwrap(), 5..7);
        assert_eq!(r.rest(), &[8, 9, 10]);
    }

    #[test]
    fn a_sub_reader_is_bounded_and_keeps_whole_input_offsets() {
        let data = [0u8, 1, 2, 3, 4, 5];
        let mut r = Reader::new(&data);
        r.u8("skip").unwrap();
        let mut sub = r.sub(3, "window").unwrap();
        assert_eq!(r.offset(), 4);
        assert_eq!(sub.take_span(2, "x").unwrap(), 1..3);
        assert!(sub.u16_le("past the window").is_err());
        assert_eq!(sub.u8("last").unwrap(), 3);
        assert_eq!(sub.remaining(), 0);
    }

    #[test]
    fn a_read_past_the_end_names_the_field() {
        let data = [0u8; 3];
        let mut r = Reader::new(&data);
        r.u16_le("first").unwrap();
        let err = r.u32_le("second").unwrap_err();
        assert_eq!(
            err,
            Truncated {
                field: "second",
                offset: 2,
                needed: 4,
                available: 1
            }
        );
        // A failed read consumes nothing.
        assert_eq!(r.offset(), 2);
        assert!(r.take(usize::MAX, "huge").is_err());
    }

    #[test]
    fn padding_must_be_zero() {
        assert_eq!(zero_padding_only(&[0, 0, 0]), Ok(3));
        assert_eq!(zero_padding_only(&[]), Ok(0));
        assert_eq!(zero_padding_only(&[0, 0, 7, 0]), Err(2));
    }
}
