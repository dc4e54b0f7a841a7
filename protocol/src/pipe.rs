//! An in-memory byte pipe implementing futures-io `AsyncRead`/`AsyncWrite`, and
//! helpers that drive the `ohttp` crate's async stream types synchronously by
//! polling them with a no-op waker.
//!
//! Nothing here ever waits: writes to a [`Pipe`] always complete, and a read of
//! an empty, open pipe returns `Pending`, which the helpers report as "no more
//! data yet" instead of blocking.

use std::{
    cmp::min,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
};

use futures_io::{AsyncRead, AsyncWrite};

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    pos: usize,
    closed: bool,
}

/// A shared buffer: one handle is given to an `ohttp` stream, the other is kept
/// to feed or drain it. Cloning gives another handle to the same buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pipe(Arc<Mutex<State>>);

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere while holding it; the buffer
        // itself is still consistent (every update is a single push or index move).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends bytes for the reading side.
    pub(crate) fn push(&self, bytes: &[u8]) {
        let mut state = self.lock();
        if state.pos > 0 {
            let pos = state.pos;
            state.buf.drain(..pos);
            state.pos = 0;
        }
        state.buf.extend_from_slice(bytes);
    }

    /// Marks the end of the data: reads of an empty pipe now return end-of-file.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Removes and returns every byte written and not yet read.
    pub(crate) fn take(&self) -> Vec<u8> {
        let mut state = self.lock();
        let pos = std::mem::take(&mut state.pos);
        let mut out = std::mem::take(&mut state.buf);
        out.drain(..pos);
        out
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let avail = state.buf.get(state.pos..).unwrap_or_default();
        if avail.is_empty() {
            return if state.closed {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let n = min(avail.len(), out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        state.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        state.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().closed = true;
        Poll::Ready(Ok(()))
    }
}

fn would_block() -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        "in-memory stream unexpectedly pending",
    )
}

/// Writes all of `data`. Our sinks never block, so `Pending` is an error.
pub(crate) fn write_all<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    mut data: &[u8],
) -> io::Result<()> {
    let mut cx = Context::from_waker(Waker::noop());
    while !data.is_empty() {
        match Pin::new(&mut *w).poll_write(&mut cx, data) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                data = data
                    .get(n..)
                    .ok_or_else(|| io::Error::other("writer overran"))?
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Err(would_block()),
        }
    }
    Ok(())
}

/// Flushes `w`; `Pending` is an error.
pub(crate) fn flush<W: AsyncWrite + Unpin + ?Sized>(w: &mut W) -> io::Result<()> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut *w).poll_flush(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(would_block()),
    }
}

/// Closes `w`; `Pending` is an error.
pub(crate) fn close<W: AsyncWrite + Unpin + ?Sized>(w: &mut W) -> io::Result<()> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut *w).poll_close(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(would_block()),
    }
}

/// Reads everything `r` can produce now, appending it to `out`.
/// Returns `Ok(true)` at end of stream, `Ok(false)` when more input is needed.
/// `scratch` must not be empty (a zero-length read means end of stream).
pub(crate) fn read_available<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    scratch: &mut [u8],
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    if scratch.is_empty() {
        return Err(io::Error::other("empty read buffer"));
    }
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut *r).poll_read(&mut cx, scratch) {
            Poll::Ready(Ok(0)) => return Ok(true),
            Poll::Ready(Ok(n)) => {
                let got = scratch
                    .get(..n)
                    .ok_or_else(|| io::Error::other("reader overran"))?;
                out.extend_from_slice(got);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_reads_what_was_pushed_then_pends_then_ends() {
        let pipe = Pipe::default();
        let mut reader = pipe.clone();
        let mut scratch = [0u8; 3];
        let mut out = Vec::new();
        pipe.push(b"hello");
        assert!(!read_available(&mut reader, &mut scratch, &mut out).unwrap());
        assert_eq!(out, b"hello");
        pipe.push(b"!");
        pipe.close();
        assert!(read_available(&mut reader, &mut scratch, &mut out).unwrap());
        assert_eq!(out, b"hello!");
    }

    #[test]
    fn pipe_take_returns_written_bytes_once() {
        let pipe = Pipe::default();
        let mut writer = pipe.clone();
        write_all(&mut writer, b"abc").unwrap();
        write_all(&mut writer, b"def").unwrap();
        assert_eq!(pipe.take(), b"abcdef");
        assert!(pipe.take().is_empty());
        close(&mut writer).unwrap();
        assert!(write_all(&mut writer, b"x").is_err());
    }
}
