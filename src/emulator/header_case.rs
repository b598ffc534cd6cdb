//! Response header names spelled as real COS spells them (`ETag`, `Content-Length`,
//! `Last-Modified`, `x-cos-hash-crc64ecma`, `x-cos-server-side-encryption-customer-key-MD5`).
//!
//! hyper writes every header name in lower case and has no public way to choose another case.
//! HTTP names are case-insensitive, but the official Python SDK hands response headers back as a
//! plain `dict` and indexes it case-sensitively: `response['ETag']` in its own examples,
//! `object_info['Content-Length']`, `['ETag']`, `['Last-Modified']` in `download_file`. So the
//! emulator must use COS's spelling. This wrapper sits between the socket and hyper and rewrites
//! the header names of each response head in place (same length, only letter case changes).
//!
//! A response head is recognised as the first bytes written after request bytes were read
//! (HTTP/1.1 without pipelining: a response follows its request) when they begin with
//! `HTTP/1.`; it ends at the blank line. Everything else passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Names COS sends in mixed case; every other name (`x-cos-*`, user metadata) is lower case.
const COS_SPELLING: &[&str] = &[
    "Accept-Ranges",
    "Cache-Control",
    "Connection",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Range",
    "Content-Type",
    "Date",
    "ETag",
    "Expires",
    "Last-Modified",
    "Server",
    "Transfer-Encoding",
    "x-cos-server-side-encryption-customer-key-MD5",
];

/// Rewrites the header names of one complete response head in place.
fn respell(head: &mut [u8]) {
    let mut lines = head.split_mut(|&b| b == b'\n');
    let _status_line = lines.next();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &mut line[..colon];
        if let Some(spelled) = COS_SPELLING
            .iter()
            .find(|s| s.as_bytes().eq_ignore_ascii_case(name))
        {
            name.copy_from_slice(spelled.as_bytes());
        }
    }
}

/// An IO stream whose outgoing response heads get COS's header spelling.
pub struct CosHeaderCase<S> {
    inner: S,
    /// Request bytes arrived since response bytes were last written.
    read_since_write: bool,
    /// Collecting a response head (until the blank line).
    in_head: bool,
    head: Vec<u8>,
    /// A rewritten head, from `out_pos` on still to be written.
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> CosHeaderCase<S> {
    pub fn new(inner: S) -> Self {
        CosHeaderCase {
            inner,
            read_since_write: false,
            in_head: false,
            head: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> CosHeaderCase<S> {
    /// Writes out what is pending of a rewritten head.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes head bytes from `buf`; returns how many were taken.
    fn take_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> usize {
        let start = self.head.len().saturating_sub(3);
        self.head.extend_from_slice(buf);
        let taken = match self.head[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => {
                let end = start + i + 4;
                let taken = buf.len() - (self.head.len() - end);
                self.head.truncate(end);
                self.finish_head();
                taken
            }
            None => buf.len(),
        };
        // Start sending; what does not go now goes on the next write or flush.
        let _ = self.drain(cx);
        taken
    }

    fn finish_head(&mut self) {
        let mut head = std::mem::take(&mut self.head);
        respell(&mut head);
        self.out.extend_from_slice(&head);
        self.in_head = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CosHeaderCase<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.read_since_write = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CosHeaderCase<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if std::mem::take(&mut this.read_since_write) && buf.starts_with(b"HTTP/1.") {
            this.in_head = true;
            this.head.clear();
        }
        if this.in_head {
            return Poll::Ready(Ok(this.take_head(cx, buf)));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.is_empty() && !this.in_head && !this.read_since_write {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map(|b| &**b)
            .unwrap_or(&[]);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.in_head {
            // hyper flushes whole heads; should a partial one be flushed, send it as it is.
            this.finish_head();
            this.in_head = true;
        }
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.in_head {
            this.finish_head();
        }
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn respells_known_names_only() {
        let mut head = b"HTTP/1.1 200 OK\r\netag: \"x\"\r\ncontent-length: 5\r\nx-cos-meta-etag: etag: v\r\nx-cos-server-side-encryption-customer-key-md5: m\r\nx-cos-hash-crc64ecma: 1\r\n\r\n".to_vec();
        respell(&mut head);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 5\r\nx-cos-meta-etag: etag: v\r\nx-cos-server-side-encryption-customer-key-MD5: m\r\nx-cos-hash-crc64ecma: 1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn rewrites_heads_not_bodies() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut server = CosHeaderCase::new(server);
        let mut client = client;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut req = [0u8; 18];
        server.read_exact(&mut req).await.unwrap();
        // Head and body in one write, then a body write that looks like a head.
        server
            .write_all(b"HTTP/1.1 200 OK\r\netag: a\r\ncontent-length: 40\r\n\r\nHTTP/1.1 200 OK\r\netag: b\r\n\r\n")
            .await
            .unwrap();
        server.write_all(b"etag: c\r\n\r\n").await.unwrap();
        server.flush().await.unwrap();
        drop(server);
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        assert_eq!(
            got,
            "HTTP/1.1 200 OK\r\nETag: a\r\nContent-Length: 40\r\n\r\nHTTP/1.1 200 OK\r\netag: b\r\n\r\netag: c\r\n\r\n"
        );
    }
}
