//! The buffers of an HTTP/1 downstream connection, sized on purpose.
//!
//! Portcullis accepts its own sockets (see `listeners`), so Pingora's listener never gives them
//! its L4 buffers (`Stream::set_buffer` is `pub(crate)` in Pingora 0.9): unbuffered, a response
//! head and its body leave in two writes, and on loopback each write also pays the receiver's
//! wake-up. Pingora's own buffers would cost 64 KiB of read buffer per connection, idle or not.
//! So, for the HTTP/1 connection loop in `http1`:
//!
//! - [`WriteBuffer`]: writes are held until [`WRITE_BUFFER`] bytes or a flush, so a head and a
//!   small body go out in one write (as nginx and Pingora's own listeners do); a write that does
//!   not fit goes out together with what is held, in one vectored write. Pingora flushes where
//!   it matters: after a head without a body, after each chunk of a chunked or close-delimited
//!   body, and at the end of a body (`pingora-core` `protocols/http/v1/body.rs`, "NOTE on
//!   buffering/flush stream when writing the body"), so buffering delays nothing it would not.
//! - [`fill`]: a read lands in a per-thread scratch buffer and only the bytes that came are kept,
//!   so a connection waiting for its next request holds no read buffer at all.
//!
//! An idle keep-alive connection [`release`](WriteBuffer::release)s both.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write goes out: Pingora's own L4 write buffer (`pingora-core`
/// `DEFAULT_L4_WRITE_BUFFER_SIZE`, one Ethernet MSS).
pub const WRITE_BUFFER: usize = 1460;

/// The most one read takes from the socket (a TLS record's worth).
pub const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<[u8; READ_CHUNK]> = const { RefCell::new([0; READ_CHUNK]) };
}

/// Reads at most `want` bytes (and at most [`READ_CHUNK`]) from `r` onto the end of `pending`,
/// holding no buffer of its own while nothing has arrived. Returns the bytes read (0: EOF).
pub async fn fill<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    pending: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_fill(r, cx, pending, want)).await
}

fn poll_fill<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    cx: &mut Context<'_>,
    pending: &mut BytesMut,
    want: usize,
) -> Poll<io::Result<usize>> {
    let want = want.min(READ_CHUNK);
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => poll_read_into(r, cx, &mut scratch[..want], pending),
        // Never expected (nothing reads a downstream socket from inside another's read); a
        // small stack buffer then.
        Err(_) => poll_read_into(r, cx, &mut [0u8; 2048][..want.min(2048)], pending),
    })
}

fn poll_read_into<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    cx: &mut Context<'_>,
    scratch: &mut [u8],
    pending: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(scratch);
    ready!(Pin::new(r).poll_read(cx, &mut buf))?;
    pending.extend_from_slice(buf.filled());
    Poll::Ready(Ok(buf.filled().len()))
}

/// Response bytes not yet written (see the module docs).
#[derive(Debug, Default)]
pub struct WriteBuffer {
    held: Vec<u8>,
}

impl WriteBuffer {
    /// Takes `data` for `w`: held when it fits, else written in one (vectored) write with what
    /// is held.
    pub fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.held.len() + data.len() <= WRITE_BUFFER {
                if self.held.capacity() == 0 {
                    self.held.reserve_exact(WRITE_BUFFER);
                }
                self.held.extend_from_slice(data);
                return Poll::Ready(Ok(data.len()));
            }
            if self.held.is_empty() {
                return Pin::new(&mut *w).poll_write(cx, data);
            }
            if !w.is_write_vectored() {
                ready!(self.poll_write_held(w, cx))?;
                continue;
            }
            let both = [IoSlice::new(&self.held), IoSlice::new(data)];
            let n = ready!(Pin::new(&mut *w).poll_write_vectored(cx, &both))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < self.held.len() {
                self.held.drain(..n);
                continue;
            }
            let taken = n - self.held.len();
            self.held.clear();
            if taken > 0 {
                return Poll::Ready(Ok(taken));
            }
        }
    }

    /// Vectored writes: held when they fit, else what is held goes first.
    pub fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held.len() + total > WRITE_BUFFER {
            ready!(self.poll_write_held(w, cx))?;
            if total > WRITE_BUFFER {
                return Pin::new(&mut *w).poll_write_vectored(cx, bufs);
            }
        }
        if self.held.capacity() == 0 {
            self.held.reserve_exact(WRITE_BUFFER);
        }
        for b in bufs {
            self.held.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    /// Writes out everything held.
    pub fn poll_write_held<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out everything held, then flushes `w`.
    pub fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_held(w, cx))?;
        Pin::new(w).poll_flush(cx)
    }

    /// Writes out everything held, then shuts `w` down.
    pub fn poll_shutdown<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_held(w, cx))?;
        Pin::new(w).poll_shutdown(cx)
    }

    /// Frees the buffer of a connection that waits for its next request (nothing held).
    pub fn release(&mut self) {
        if self.held.is_empty() {
            self.held = Vec::new();
        }
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.held.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Records each write it is given (a socket that accepts `limit` bytes per write).
    #[derive(Default)]
    struct Writes {
        calls: Vec<Vec<u8>>,
        vectored: bool,
        limit: Option<usize>,
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit.unwrap_or(usize::MAX));
            self.calls.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len().min(self.limit.unwrap_or(usize::MAX));
            self.calls.push(all[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write_all(b: &mut WriteBuffer, w: &mut Writes, mut data: &[u8]) {
        while !data.is_empty() {
            let n = poll_fn(|cx| b.poll_write(w, cx, data)).await.unwrap();
            data = &data[n..];
        }
    }

    #[tokio::test]
    async fn a_head_and_a_small_body_leave_in_one_write_at_the_flush() {
        let (mut b, mut w) = (WriteBuffer::default(), Writes::default());
        write_all(
            &mut b,
            &mut w,
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
        )
        .await;
        write_all(&mut b, &mut w, b"hello").await;
        assert!(w.calls.is_empty(), "nothing written before the flush");
        poll_fn(|cx| b.poll_flush(&mut w, cx)).await.unwrap();
        assert_eq!(
            w.calls,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_large_body_goes_out_with_the_held_head_in_one_vectored_write() {
        let (mut b, mut w) = (WriteBuffer::default(), Writes::default());
        w.vectored = true;
        let body = vec![b'x'; 8000];
        write_all(&mut b, &mut w, b"HEAD\r\n\r\n").await;
        write_all(&mut b, &mut w, &body).await;
        assert_eq!(w.calls.len(), 1);
        assert_eq!(w.calls[0].len(), 8 + 8000);
        poll_fn(|cx| b.poll_flush(&mut w, cx)).await.unwrap();
        assert_eq!(w.calls.len(), 1, "nothing left to flush");
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        for vectored in [false, true] {
            let (mut b, mut w) = (WriteBuffer::default(), Writes::default());
            w.vectored = vectored;
            w.limit = Some(700);
            let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
            write_all(&mut b, &mut w, &data[..100]).await;
            write_all(&mut b, &mut w, &data[100..3000]).await;
            write_all(&mut b, &mut w, &data[3000..]).await;
            poll_fn(|cx| b.poll_flush(&mut w, cx)).await.unwrap();
            assert_eq!(w.calls.concat(), data, "vectored: {vectored}");
        }
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_write_buffer() {
        let (mut b, mut w) = (WriteBuffer::default(), Writes::default());
        write_all(&mut b, &mut w, b"abc").await;
        b.release();
        assert!(b.capacity() > 0, "held bytes are kept until written");
        poll_fn(|cx| b.poll_flush(&mut w, cx)).await.unwrap();
        b.release();
        assert_eq!(b.capacity(), 0);
    }

    #[tokio::test]
    async fn fill_keeps_only_what_arrived() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut pending = BytesMut::new();
        let n = fill(&mut server, &mut pending, 4096).await.unwrap();
        assert_eq!(n, 18);
        assert_eq!(&pending[..], b"GET / HTTP/1.1\r\n\r\n");
        assert!(pending.capacity() < 64, "sized to the bytes read");
        drop(client);
        assert_eq!(fill(&mut server, &mut pending, 4096).await.unwrap(), 0);
    }
}
