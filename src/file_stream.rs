//! A byte range of a file as a stream of `Bytes` chunks, read on the blocking pool. Shared by the
//! client (request bodies from a staging file) and the emulator (response bodies).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

/// Streams `len` bytes of `file` starting at `offset`, `chunk` bytes at a time. A file shorter
/// than promised ends the stream with an `UnexpectedEof` error, never short data.
pub fn file_range(
    file: Arc<std::fs::File>,
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
            f.read_exact_at(&mut buf, off).map(|_| Bytes::from(buf))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match res {
            Ok(b) => Some((Ok(b), (file, off + n, left - n))),
            Err(e) => Some((Err(e), (file, off, 0))),
        }
    })
}
