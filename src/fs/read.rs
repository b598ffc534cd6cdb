//! Reads: ranged GETs pinned to the ETag seen at open, with a sequential prefetcher.
//!
//! A reader that keeps reading where it left off (or inside what is already queued) gets a
//! window of ranged GETs in flight ahead of it; the window starts at `initial` bytes and doubles
//! with each sequential read up to `max_window`, split into chunks of at most `max_chunk`, so
//! several GETs run at once. A read elsewhere resets the window; a small read far from the last
//! one fetches exactly its range. Every GET carries `If-Match: <etag>`: if the object is
//! replaced while open, reads fail with ESTALE instead of mixing two versions. Prefetched bytes
//! are bounded per handle (`max_window`) and per mount (a semaphore counting KiB).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::data_cache::{self, DataCache};
use super::error::{FsError, FsResult};
use crate::cos::{GetObject, ObjectClient};

/// Prefetch tuning; see `--prefetch-*` options.
#[derive(Debug, Clone)]
pub struct PrefetchConfig {
    /// First window: small, so a reader that stops early costs little (1 MiB).
    pub initial: u64,
    /// Largest window per handle (64 MiB keeps a loopback or LAN link busy while bounded).
    pub max_window: u64,
    /// Largest single GET (8 MiB: big enough to amortise a request, small enough that several
    /// run in parallel within the window).
    pub max_chunk: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        PrefetchConfig {
            initial: 1 << 20,
            max_window: 64 << 20,
            max_chunk: 8 << 20,
        }
    }
}

/// The object version a reader is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

enum ChunkData {
    Pending(JoinHandle<FsResult<Bytes>>),
    Ready(Bytes),
}

struct Chunk {
    start: u64,
    end: u64,
    data: ChunkData,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let ChunkData::Pending(h) = &self.data {
            h.abort();
        }
    }
}

pub struct Prefetcher {
    client: Arc<dyn ObjectClient>,
    version: Version,
    cfg: PrefetchConfig,
    memory: Arc<Semaphore>,
    chunks: VecDeque<Chunk>,
    /// Where fetched blocks are kept, and looked for first (`--data-cache`).
    cache: Option<Arc<DataCache>>,
    window: u64,
    /// End of the last chunk queued.
    next_fetch: u64,
    /// End of the last read served.
    last_end: u64,
    /// No read since the handle opened or the reader moved elsewhere.
    fresh: bool,
}

/// How far out of order the kernel's readahead reads may arrive and still be one stream.
const REORDER_SLACK: u64 = 4 << 20;
/// Reads at least this large can be readahead (the kernel's are 128 KiB to 1 MiB); smaller ones
/// near the stream are an application's own random reads.
const STREAM_READ_MIN: u64 = 64 << 10;

/// The smallest first GET of a queue: the kernel's first read of a file (16 KiB). Every byte
/// more delays that read's answer (a 128 KiB first GET took 1.6 ms against 0.5 ms here).
const FIRST_CHUNK: u64 = 16 << 10;

fn kib(n: u64) -> u32 {
    n.div_ceil(1024).min(u32::MAX as u64) as u32
}

/// Fetches `[start, end)` of a pinned version: from the data cache when it holds the range,
/// else from COS (the whole blocks fetched then go into the cache).
pub async fn fetch_range(
    client: &dyn ObjectClient,
    cache: Option<&DataCache>,
    version: &Version,
    start: u64,
    end: u64,
) -> FsResult<Bytes> {
    if start >= end {
        return Ok(Bytes::new());
    }
    if let Some(c) = cache {
        let hit = tokio::task::block_in_place(|| {
            c.get(&version.key, &version.etag, version.size, start, end)
        });
        if let Some(data) = hit {
            return Ok(data);
        }
    }
    let req = GetObject::new(version.key.clone())
        .range(start, end)
        .if_match(version.etag.clone());
    let (body, sums) = match cache {
        // The blocks' checksums are computed as the body arrives, while the CPU holds it,
        // not by the cache's thread, which would read every byte back from memory.
        Some(_) if start % data_cache::BLOCK == 0 => {
            let (_, body, sums) = client
                .get_object_summed(req, data_cache::BLOCK as usize)
                .await
                .map_err(FsError::from_read)?;
            (body, sums)
        }
        _ => {
            let (_, body) = client
                .get_object_bytes(req)
                .await
                .map_err(FsError::from_read)?;
            (body, Vec::new())
        }
    };
    if body.len() as u64 != end - start {
        // Shorter than asked: the object changed.
        return Err(FsError::Stale);
    }
    if let Some(c) = cache {
        c.put_later(
            &version.key,
            &version.etag,
            version.size,
            start,
            body.clone(),
            sums,
        );
    }
    Ok(body)
}

impl Prefetcher {
    pub fn new(
        client: Arc<dyn ObjectClient>,
        version: Version,
        cfg: PrefetchConfig,
        memory: Arc<Semaphore>,
    ) -> Self {
        let window = cfg.initial;
        Prefetcher {
            client,
            version,
            cfg,
            memory,
            chunks: VecDeque::new(),
            cache: None,
            window,
            next_fetch: 0,
            last_end: 0,
            fresh: true,
        }
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Reads through the data cache (and fills it).
    pub fn with_cache(mut self, cache: Option<Arc<DataCache>>) -> Self {
        self.cache = cache;
        self
    }

    fn queued_start(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.start)
    }

    fn covered(&self, offset: u64) -> bool {
        self.queued_start()
            .is_some_and(|s| offset >= s && offset < self.next_fetch)
    }

    fn reset(&mut self, at: u64) {
        self.fresh = true;
        self.chunks.clear();
        self.window = self.cfg.initial;
        self.next_fetch = at;
    }

    fn spawn_chunk(&mut self, start: u64, end: u64, permit: OwnedSemaphorePermit) {
        let client = self.client.clone();
        let version = self.version.clone();
        let cache = self.cache.clone();
        let task = tokio::spawn(async move {
            fetch_range(&*client, cache.as_deref(), &version, start, end).await
        });
        self.chunks.push_back(Chunk {
            start,
            end,
            data: ChunkData::Pending(task),
            _permit: permit,
        });
        self.next_fetch = end;
    }

    fn chunk_len(&self) -> u64 {
        (self.window / 4).clamp(self.cfg.initial.min(self.cfg.max_chunk), self.cfg.max_chunk)
    }

    /// Queues chunks until `[.., need_end)` is covered (waiting for memory if it must) and
    /// then, opportunistically, up to the window ahead of `offset`.
    async fn fill(&mut self, offset: u64, need_end: u64) -> FsResult<()> {
        let size = self.version.size;
        // The first read of a handle (or after a seek) fetches only what it needs: read-ahead
        // started at the same time would compete with it for the link (and, on a small
        // machine, for the CPU) and delay its first byte. The next sequential read starts it.
        let fresh = std::mem::take(&mut self.fresh);
        while self.next_fetch < need_end {
            let start = self.next_fetch;
            // The first GET of a queue asks only for what the read needs (at least
            // `FIRST_CHUNK`), so the first byte arrives without waiting for a whole chunk;
            // bigger chunks follow it in parallel.
            let len = if self.chunks.is_empty() {
                (need_end - start).max(FIRST_CHUNK)
            } else {
                self.chunk_len()
            };
            let mut end = (start + len).min(size);
            if self.cache.is_some() {
                // Chunks end on block boundaries, so that each fills whole blocks of the cache.
                end = end.next_multiple_of(data_cache::BLOCK).min(size);
            }
            let permit = self
                .memory
                .clone()
                .acquire_many_owned(kib(end - start))
                .await
                .map_err(|_| FsError::Local("prefetch memory closed".into()))?;
            self.spawn_chunk(start, end, permit);
        }
        let horizon = (offset + self.window).min(size);
        while !fresh && self.next_fetch < horizon {
            let start = self.next_fetch;
            let end = (start + self.chunk_len()).min(size);
            let Ok(permit) = self.memory.clone().try_acquire_many_owned(kib(end - start)) else {
                break;
            };
            self.spawn_chunk(start, end, permit);
        }
        Ok(())
    }

    /// `[start, end)` by one fetch of its own, outside the queue.
    async fn fetch_alone(&self, start: u64, end: u64) -> FsResult<Bytes> {
        fetch_range(
            &*self.client,
            self.cache.as_deref(),
            &self.version,
            start,
            end,
        )
        .await
    }

    /// Reads up to `len` bytes at `offset` (fewer only at the end of the object).
    pub async fn read(&mut self, offset: u64, len: u64) -> FsResult<Bytes> {
        let size = self.version.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len).min(size);
        // The kernel's readahead sends several reads at once, and they reach the reader
        // slightly out of order. A large read just ahead of the stream, or one just behind it,
        // belongs to the same sequential reader: it neither resets the window nor drops the
        // GETs in flight.
        let near = len >= STREAM_READ_MIN
            && self.last_end != u64::MAX
            && offset + REORDER_SLACK >= self.last_end
            && offset <= self.next_fetch.max(self.last_end) + REORDER_SLACK;
        if near && !self.covered(offset) && self.queued_start().is_some_and(|s| offset < s) {
            // A straggler behind the queue: fetched by itself, the queue left as it is.
            return self.fetch_alone(offset, end).await;
        }
        let sequential = offset == self.last_end || self.covered(offset) || near;
        if !sequential {
            self.reset(offset);
            if end - offset <= self.cfg.initial {
                // A random read: fetch exactly what was asked, no prefetch.
                self.last_end = end;
                self.next_fetch = end;
                return self.fetch_alone(offset, end).await;
            }
        } else if offset >= self.last_end && offset > 0 {
            self.window = (self.window * 2).min(self.cfg.max_window);
        }
        if !self.covered(offset) {
            if near {
                // Just past the queue (or the first reads, out of order): the queue goes on
                // from where it ends, taking in the bytes the reads still on the way want.
                if self.chunks.is_empty() {
                    self.next_fetch = self.next_fetch.min(offset).min(self.last_end);
                }
            } else {
                // Sequential, but past everything queued: start a new queue there, keeping
                // the window this reader has earned.
                self.chunks.clear();
                self.next_fetch = offset;
            }
        }
        self.fill(offset, end).await?;
        // Chunks well before this read are consumed; one that a read still on the way may want
        // (kernel readahead reorders reads a little) is kept until the reads pass it by.
        while self
            .chunks
            .front()
            .is_some_and(|c| c.end + REORDER_SLACK <= offset)
        {
            self.chunks.pop_front();
        }
        let mut out: Option<Bytes> = None;
        let mut buf: Option<BytesMut> = None;
        let mut failure = None;
        for chunk in self.chunks.iter_mut() {
            if chunk.start >= end {
                break;
            }
            if chunk.end <= offset {
                continue;
            }
            if let ChunkData::Pending(h) = &mut chunk.data {
                let data = match h.await {
                    Ok(Ok(data)) => data,
                    Ok(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    Err(e) => {
                        failure = Some(FsError::Local(format!("prefetch task failed: {e}")));
                        break;
                    }
                };
                chunk.data = ChunkData::Ready(data);
            }
            let ChunkData::Ready(data) = &chunk.data else {
                unreachable!("set above")
            };
            let s = (offset.max(chunk.start) - chunk.start) as usize;
            let e = (end.min(chunk.end) - chunk.start) as usize;
            let piece = data.slice(s..e);
            match (&mut out, &mut buf) {
                (None, None) => out = Some(piece),
                (Some(first), None) => {
                    let mut b = BytesMut::with_capacity((end - offset) as usize);
                    b.extend_from_slice(first);
                    b.extend_from_slice(&piece);
                    buf = Some(b);
                }
                (_, Some(b)) => b.extend_from_slice(&piece),
            }
        }
        if let Some(e) = failure {
            // A finished task cannot be awaited again: forget every queued chunk, so the next
            // read starts afresh (and retries) instead of polling a completed handle.
            self.reset(offset);
            self.last_end = u64::MAX;
            return Err(e);
        }
        // A straggler served from the queue does not move the stream back.
        self.last_end = if near { self.last_end.max(end) } else { end };
        Ok(match buf {
            Some(b) => b.freeze(),
            None => out.unwrap_or_default(),
        })
    }
}
