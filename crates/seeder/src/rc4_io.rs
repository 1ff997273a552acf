//! The two halves of a connection whose payload is RC4-encrypted (after a Message Stream
//! Encryption exchange that selected RC4): a reader that decrypts what arrives in place, and
//! a writer that encrypts into its own buffer before writing.
//!
//! The writer accepts bytes as soon as they are encrypted into its buffer (at most
//! [`MAX_PENDING`] at a time) and writes that buffer out on later calls and on `flush`, so a
//! caller must flush when it has nothing more to write for a while (the seeder's writer task
//! does after each batch). The keystream advances exactly once per byte in each direction.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use seedbucket_wire::peer::mse::Rc4Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Encrypted bytes the writer holds at most before it must write some out.
const MAX_PENDING: usize = 256 * 1024;

pub(crate) struct Rc4Reader<R> {
    inner: R,
    cipher: Rc4Stream,
}

impl<R> Rc4Reader<R> {
    pub(crate) fn new(inner: R, cipher: Rc4Stream) -> Self {
        Self { inner, cipher }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Rc4Reader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let fresh = buf.filled_mut().get_mut(before..).unwrap_or_default();
        this.cipher.apply(fresh);
        Poll::Ready(Ok(()))
    }
}

pub(crate) struct Rc4Writer<W> {
    inner: W,
    cipher: Rc4Stream,
    /// Encrypted, not yet written: `pending[written..]`.
    pending: Vec<u8>,
    written: usize,
}

impl<W> Rc4Writer<W> {
    pub(crate) fn new(inner: W, cipher: Rc4Stream) -> Self {
        Self {
            inner,
            cipher,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> Rc4Writer<W> {
    /// Writes out the buffer until it is empty (`Ready(Ok)`) or the socket would block.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let rest = self.pending.get(self.written..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Encrypts as much of `bufs` as fits into the buffer; returns the bytes taken.
    fn take(&mut self, bufs: &[io::IoSlice<'_>]) -> usize {
        let mut taken = 0;
        for b in bufs {
            let room = MAX_PENDING.saturating_sub(self.pending.len());
            if room == 0 {
                break;
            }
            let part = b.get(..b.len().min(room)).unwrap_or_default();
            let start = self.pending.len();
            self.pending.extend_from_slice(part);
            if let Some(fresh) = self.pending.get_mut(start..) {
                self.cipher.apply(fresh);
            }
            taken += part.len();
        }
        taken
    }

    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() >= MAX_PENDING {
            ready!(self.poll_drain(cx))?;
        }
        let taken = self.take(bufs);
        // Start writing at once; what does not fit waits for the next call or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Rc4Writer<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_slices(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
