//! A byte range of a file as a stream of `Bytes` chunks, read on the blocking pool. Shared by the
//! client (request bodies from a staging file) and the emulator (response bodies).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

/// The error inside the `UnexpectedEof` that ends a stream of a file shorter than the range
/// it was to send (a staging file truncated while one of its parts was being uploaded):
/// trying again cannot help, unlike a broken connection.
#[derive(Debug)]
pub struct FileShorterThanRange;

impl std::fmt::Display for FileShorterThanRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file is shorter than the range being sent")
    }
}

impl std::error::Error for FileShorterThanRange {}

/// Something read by offset: a file, or the emulator's object made of several files.
pub trait ReadAt: Send + Sync + 'static {
    /// Fills `buf` from `off`, or fails with `UnexpectedEof` where the bytes end first.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, off)
    }
}

/// Streams `len` bytes of `file` starting at `offset`, `chunk` bytes at a time. A file shorter
/// than promised ends the stream with an `UnexpectedEof` error (holding
/// `FileShorterThanRange`), never short data.
pub fn file_range<F: ReadAt>(
    file: Arc<F>,
    offset: u64,
    len: u64,
    chunk: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold((file, offset, len), move |(file, off, left)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(chunk.max(1));
        let f = file.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n as usize];
            f.read_exact_at(&mut buf, off)
                .map(|_| Bytes::from(buf))
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        std::io::Error::new(e.kind(), FileShorterThanRange)
                    }
                    _ => e,
                })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match res {
            Ok(b) => Some((Ok(b), (file, off + n, left - n))),
            Err(e) => Some((Err(e), (file, off, 0))),
        }
    })
}
