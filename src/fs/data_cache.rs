//! The local data cache (`--data-cache DIR`): blocks of objects read or written through the
//! mount, kept on local disk so repeated reads (and reads after a remount) need no GET.
//!
//! - Entries are keyed by object key and ETag, so a changed object never serves old bytes: a
//!   new version is a new entry, and the old one of the same key is dropped when the new one
//!   is seen.
//! - Each object is one sparse file (`<id>.data`, the object's bytes at their offsets, holes
//!   where blocks are missing) and a journal (`<id>.meta`: a header line with the key, ETag and
//!   size, then a line per stored block with its checksum (XXH3-64), `-N` for an evicted one,
//!   and `a` lines with the object's user metadata). A block is checked against its checksum
//!   every time it is read: a damaged or truncated block is dropped and fetched again, never
//!   returned.
//! - The cache is bounded (`--max-cache-size`); the least recently used blocks go first (their
//!   range of the data file is punched out).
//! - The cache survives a remount: the journals are read back at start.
//! - One mount at a time: `DIR/lock` is held (flock) for the mount's life; a second mount on the
//!   same directory is refused at start with one line.
//! - A read never fails because of the cache: any error of the cache (a full disk, the directory
//!   removed) makes the read go to COS, with one warning.
//! - FUSE passthrough: `complete_file` gives the data file of an object whose every block is
//!   cached, checked once (every block against its checksum, when the entry came from an earlier
//!   mount). The file is pinned while the kernel reads it: an eviction then removes the whole
//!   entry (unlinks its files, which the open descriptor keeps) instead of punching holes in it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::direct_io;

/// Bytes per block: what is stored, checked and evicted as one.
pub const BLOCK: u64 = 1 << 20;
/// The journal format (the first word of the header line).
const FORMAT: &str = "cosmount-cache-v2";

/// A block's checksum: XXH3-64 (seed 0), stored in the journal, so it is part of the format.
/// A damaged block (torn, zeroed, a flipped bit) passes with odds of 2^-64, as with a 64-bit
/// CRC, at a fifth of crc64fast's CPU: a cold read checksums every byte it stores (the GET
/// computes them as the bytes arrive, `ObjectClient::get_object_summed`).
fn checksum(block: &[u8]) -> u64 {
    crate::block_sum::xxh3(block)
}

/// An entry's journal line for its attributes: `a <second> <user metadata as JSON>`.
fn attrs_line(a: &Attrs) -> String {
    let user = serde_json::to_string(&a.user).unwrap_or_else(|_| "{}".into());
    format!("a {} {user}\n", a.modified_s)
}

fn parse_attrs_line(line: &str) -> Option<Attrs> {
    let (modified_s, user) = line.strip_prefix("a ")?.split_once(' ')?;
    Some(Attrs {
        modified_s: modified_s.parse().ok()?,
        user: serde_json::from_str(user).ok()?,
    })
}
/// The default bound: at most this, and at most a tenth of the free space where the cache is,
/// so a small disk is never filled.
const DEFAULT_MAX: u64 = 5 << 30;

/// An object version: the cache's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectId {
    key: String,
    etag: String,
}

impl ObjectId {
    fn new(key: &str, etag: &str) -> Self {
        ObjectId {
            key: key.to_string(),
            etag: etag.to_string(),
        }
    }

    /// The name of its files: a hash of key and ETag (keys can be any UTF-8 up to 850 bytes).
    fn file_stem(&self) -> String {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        h.update(self.key.as_bytes());
        h.update([0]);
        h.update(self.etag.as_bytes());
        hex::encode(h.finalize())
    }
}

struct Entry {
    stem: String,
    size: u64,
    /// The checksum of each stored block (`None`: not stored).
    blocks: Vec<Option<u64>>,
    /// The data file as it was when every block was last checked against its checksum (for
    /// passthrough, which cannot check what the kernel reads): while the file is unchanged
    /// since, it need not be checked again. Storing or dropping a block clears it.
    checked: Option<Stamp>,
    /// The object's user metadata (mode, owner, times), for listings after a remount.
    attrs: Option<Attrs>,
}

/// User metadata of one version of an object, as a HEAD gave it, with the second of its
/// Last-Modified. A change of metadata alone (a copy onto itself, as a chmod is) keeps the
/// ETag but changes Last-Modified, so a listing entry with the same ETag and the same
/// Last-Modified second is this version, metadata included, provided that HEAD came at least
/// `ATTRS_SETTLED` after it (a later change then falls in a later second). Another mount's
/// change within that window is the only one this could miss, which is why it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attrs {
    modified_s: u64,
    user: std::collections::BTreeMap<String, String>,
}

/// How long after an object's Last-Modified (by the server's clock: the HEAD's Date) its
/// metadata must have been read to be remembered: listings give seconds, and one more second
/// covers servers whose clocks differ by up to that.
const ATTRS_SETTLED: u64 = 2;
/// Attributes remembered for objects with no entry yet (read by a listing before their blocks).
const PENDING_ATTRS: usize = 10_000;

fn whole_seconds(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What identifies a file's content without reading it: a write changes mtime and ctime (and
/// no one can set ctime back), a replacement the inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(file: &File) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Some(Stamp {
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    /// Its journal line (`checked <ino> <size> <mtime> <ctime>`).
    fn line(&self) -> String {
        format!(
            "checked {} {} {} {}\n",
            self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }

    fn parse(line: &str) -> Option<Stamp> {
        let mut w = line.strip_prefix("checked ")?.split(' ');
        let mut next = || w.next()?.parse::<i128>().ok();
        Some(Stamp {
            ino: next()? as u64,
            size: next()? as u64,
            mtime_ns: next()?,
            ctime_ns: next()?,
        })
    }
}

impl Entry {
    fn block_len(&self, i: u64) -> u64 {
        BLOCK.min(self.size - i * BLOCK)
    }
}

struct Index {
    objects: HashMap<ObjectId, Entry>,
    /// The versions of each key (normally one).
    by_key: HashMap<String, Vec<ObjectId>>,
    /// Blocks by recency of use.
    lru: lru::LruCache<(ObjectId, u64), ()>,
    used: u64,
    /// Objects whose data file the kernel reads by passthrough, with how many opens.
    pinned: HashMap<ObjectId, u32>,
    /// Bytes that `put`s made room for and are writing (counted against the bound, so that
    /// writes at the same time cannot together pass it).
    reserved: u64,
    /// Attributes of objects not cached yet, by key, with the ETag they belong to; an entry
    /// made for that version takes them.
    pending_attrs: lru::LruCache<String, (String, Attrs)>,
}

/// Fetched ranges waiting for the writer thread (`put_later`); a read that finds the queue
/// full waits for room (writing to local disk is faster than reading from COS, so this only
/// bounds memory).
const QUEUE: usize = 16;

/// Bytes of an object to store: key, ETag, size, offset, the bytes, and the checksums of its
/// blocks if known (`put_summed`; empty if not).
type Job = (String, String, u64, u64, Bytes, Vec<u64>);

pub struct DataCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// To the thread that stores what reads fetched, off their path.
    writer: Mutex<Option<std::sync::mpsc::SyncSender<Job>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held (flock) for the mount's life.
    _lock: File,
    /// A failure of the cache was logged once already.
    warned: AtomicBool,
}

impl std::fmt::Debug for DataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Free bytes of the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail * s.f_frsize)
}

/// Most blocks a run written at once holds.
const RUN_BLOCKS: usize = 8;

/// `blocks` (ascending) cut into runs of consecutive block numbers, at most `RUN_BLOCKS` each.
fn runs<'a, 'b>(blocks: &'b [(u64, &'a [u8])]) -> impl Iterator<Item = &'b [(u64, &'a [u8])]> {
    blocks
        .chunk_by(|a, b| b.0 == a.0 + 1)
        .flat_map(|run| run.chunks(RUN_BLOCKS))
}

/// Removes `[offset, offset + len)` of `file`'s blocks from the disk (the file keeps its size).
fn punch(file: &File, offset: u64, len: u64) {
    let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
    if let Err(e) = rustix::fs::fallocate(file, flags, offset, len) {
        log::debug!("data cache: cannot free a block: {e}");
    }
}

impl DataCache {
    /// Opens (or makes) the cache in `dir`, bounded to `max_bytes` (`None`: the default),
    /// reading back what an earlier mount left. Errors are one line for the user.
    pub fn open(dir: &Path, max_bytes: Option<u64>) -> Result<Arc<Self>, String> {
        let objects_dir = dir.join("v1");
        std::fs::create_dir_all(&objects_dir)
            .map_err(|e| format!("cannot create the data cache {}: {e}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|e| format!("cannot use the data cache {}: {e}", dir.display()))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(format!(
                "the data cache {} is in use by another mount; give each mount its own --data-cache",
                dir.display()
            ));
        }
        let max_bytes = max_bytes.unwrap_or_else(|| {
            let free = free_space(dir).unwrap_or(DEFAULT_MAX * 10);
            DEFAULT_MAX.min(free / 10)
        });
        let cache = DataCache {
            dir: objects_dir,
            max_bytes,
            index: Mutex::new(Index {
                objects: HashMap::new(),
                by_key: HashMap::new(),
                lru: lru::LruCache::unbounded(),
                pending_attrs: lru::LruCache::new(
                    std::num::NonZeroUsize::new(PENDING_ATTRS).expect("not zero"),
                ),
                used: 0,
                pinned: HashMap::new(),
                reserved: 0,
            }),
            _lock: lock,
            warned: AtomicBool::new(false),
            writer: Mutex::new(None),
            writer_thread: Mutex::new(None),
        };
        cache.load();
        cache.evict(&mut cache.index.lock(), 0, None);
        let cache = Arc::new(cache);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let weak = Arc::downgrade(&cache);
        let thread = std::thread::Builder::new()
            .name("data-cache".into())
            .spawn(move || {
                while let Ok((key, etag, size, offset, data, sums)) = rx.recv() {
                    let Some(c) = weak.upgrade() else {
                        break;
                    };
                    c.put_summed(&key, &etag, size, offset, &data, &sums);
                }
            })
            .map_err(|e| format!("cannot start the data cache's writer: {e}"))?;
        *cache.writer.lock() = Some(tx);
        *cache.writer_thread.lock() = Some(thread);
        Ok(cache)
    }

    /// Stores bytes like `put_summed`, on the cache's own thread: the caller (a read) does
    /// not wait for the disk, only, when the queue is full, for room in it.
    pub fn put_later(
        &self,
        key: &str,
        etag: &str,
        size: u64,
        offset: u64,
        data: Bytes,
        sums: Vec<u64>,
    ) {
        let Some(tx) = self.writer.lock().clone() else {
            return;
        };
        let job = (key.to_string(), etag.to_string(), size, offset, data, sums);
        if let Err(std::sync::mpsc::TrySendError::Full(job)) = tx.try_send(job) {
            let _ = tokio::task::block_in_place(|| tx.send(job));
        }
    }

    /// Stores what is queued and stops the writer (at unmount).
    pub fn close(&self) {
        self.writer.lock().take();
        if let Some(t) = self.writer_thread.lock().take() {
            let _ = t.join();
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of blocks held now.
    pub fn used_bytes(&self) -> u64 {
        self.index.lock().used
    }

    fn data_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.data"))
    }

    fn meta_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.meta"))
    }

    /// Logs a failure of the cache once; the mount goes on without it for that request.
    fn warn(&self, what: &str, e: impl std::fmt::Display) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "data cache {}: {what}: {e}; reading from COS instead (further cache errors are logged at debug level)",
                self.dir.display()
            );
        } else {
            log::debug!("data cache: {what}: {e}");
        }
    }

    /// Reads back the journals of an earlier mount.
    fn load(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut found: Vec<(std::time::SystemTime, ObjectId, u64)> = Vec::new();
        let mut idx = self.index.lock();
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "meta") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut lines = text.lines();
            let header: Option<(String, String, u64)> = lines.next().and_then(|h| {
                let v: serde_json::Value = serde_json::from_str(h).ok()?;
                (v["format"] == FORMAT).then_some(())?;
                Some((
                    v["key"].as_str()?.to_string(),
                    v["etag"].as_str()?.to_string(),
                    v["size"].as_u64()?,
                ))
            });
            let Some((key, etag, size)) = header else {
                // Unreadable, or written by another version of cosmount: its blocks go too.
                let _ = std::fs::remove_file(path.with_extension("data"));
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let id = ObjectId { key, etag };
            let stem = id.file_stem();
            let n = size.div_ceil(BLOCK) as usize;
            let mut blocks = vec![None; n];
            let mut checked = None;
            let mut attrs = None;
            for l in lines {
                if let Some(stamp) = Stamp::parse(l) {
                    checked = Some(stamp);
                    continue;
                }
                if let Some(a) = parse_attrs_line(l) {
                    attrs = Some(a);
                    continue;
                }
                // A block stored or dropped after the check: the data file changed.
                checked = None;
                if let Some(i) = l.strip_prefix('-').and_then(|i| i.parse::<usize>().ok()) {
                    if i < n {
                        blocks[i] = None;
                    }
                } else if let Some((i, crc)) = l.split_once(' ')
                    && let (Ok(i), Ok(crc)) = (i.parse::<usize>(), crc.parse::<u64>())
                    && i < n
                {
                    blocks[i] = Some(crc);
                }
            }
            let mtime = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            let entry = Entry {
                stem,
                size,
                blocks,
                checked,
                attrs,
            };
            for (i, b) in entry.blocks.iter().enumerate() {
                if b.is_some() {
                    idx.used += entry.block_len(i as u64);
                    found.push((mtime, id.clone(), i as u64));
                }
            }
            idx.by_key
                .entry(id.key.clone())
                .or_default()
                .push(id.clone());
            idx.objects.insert(id, entry);
        }
        // The journals' times give the order of use, roughly: the oldest go first.
        found.sort_by_key(|(t, ..)| *t);
        for (_, id, i) in found {
            idx.lru.put((id, i), ());
        }
    }

    /// The entry of `key`@`etag` (made when `create`), dropping the key's other versions.
    fn entry<'a>(
        &self,
        idx: &'a mut Index,
        key: &str,
        etag: &str,
        size: u64,
        create: bool,
    ) -> Option<&'a mut Entry> {
        let id = ObjectId::new(key, etag);
        if !idx.objects.contains_key(&id) {
            if !create {
                return None;
            }
            // A new version of the key: the old ones will never be read again.
            self.drop_versions(idx, key);
            let stem = id.file_stem();
            let header = serde_json::json!({
                "format": FORMAT, "key": key, "etag": etag, "size": size,
            });
            let attrs = idx
                .pending_attrs
                .pop(key)
                .filter(|(e, _)| e == etag)
                .map(|(_, a)| a);
            let mut journal = format!("{header}\n");
            if let Some(a) = &attrs {
                journal.push_str(&attrs_line(a));
            }
            let made = File::create(self.data_path(&stem))
                .and_then(|f| f.set_len(size))
                .and_then(|_| std::fs::write(self.meta_path(&stem), journal));
            if let Err(e) = made {
                self.warn("cannot make an entry", e);
                return None;
            }
            idx.by_key
                .entry(key.to_string())
                .or_default()
                .push(id.clone());
            idx.objects.insert(
                id.clone(),
                Entry {
                    stem,
                    size,
                    blocks: vec![None; size.div_ceil(BLOCK) as usize],
                    checked: None,
                    attrs,
                },
            );
        }
        idx.objects.get_mut(&id).filter(|e| e.size == size)
    }

    /// Removes `id` from the index and its files from the disk.
    fn drop_object(&self, idx: &mut Index, id: &ObjectId) {
        if let Some(v) = idx.by_key.get_mut(&id.key) {
            v.retain(|x| x != id);
        }
        if let Some(e) = idx.objects.remove(id) {
            for (i, b) in e.blocks.iter().enumerate() {
                if b.is_some() {
                    idx.used -= e.block_len(i as u64);
                    idx.lru.pop(&(id.clone(), i as u64));
                }
            }
            let _ = std::fs::remove_file(self.data_path(&e.stem));
            let _ = std::fs::remove_file(self.meta_path(&e.stem));
        }
    }

    /// Appends a line to an entry's journal.
    fn journal(&self, stem: &str, line: &str) -> std::io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(self.meta_path(stem))?;
        f.write_all(line.as_bytes())
    }

    /// Remembers the user metadata a HEAD gave for `key`@`etag` (Last-Modified `modified`,
    /// answered at `date` by the server's clock), if the HEAD came late enough after the
    /// change for a listing to tell a later one (`Attrs`).
    pub fn remember_attrs(
        &self,
        key: &str,
        etag: &str,
        modified: std::time::SystemTime,
        date: Option<std::time::SystemTime>,
        user: &std::collections::BTreeMap<String, String>,
    ) {
        let modified_s = whole_seconds(modified);
        if date.is_none_or(|d| whole_seconds(d) < modified_s + ATTRS_SETTLED) {
            return;
        }
        let attrs = Attrs {
            modified_s,
            user: user.clone(),
        };
        let mut idx = self.index.lock();
        let id = ObjectId::new(key, etag);
        match idx.objects.get_mut(&id) {
            Some(e) if e.attrs.as_ref() != Some(&attrs) => {
                let stem = e.stem.clone();
                e.attrs = Some(attrs.clone());
                if let Err(e) = self.journal(&stem, &attrs_line(&attrs)) {
                    self.warn("cannot store an object's attributes", e);
                }
            }
            Some(_) => {}
            None => {
                idx.pending_attrs
                    .put(key.to_string(), (etag.to_string(), attrs));
            }
        }
    }

    /// The user metadata remembered for `key`@`etag` last modified at `modified` (the same
    /// second), if any.
    pub fn attrs(
        &self,
        key: &str,
        etag: &str,
        modified: std::time::SystemTime,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let idx = self.index.lock();
        let a = idx.objects.get(&ObjectId::new(key, etag))?.attrs.as_ref()?;
        (a.modified_s == whole_seconds(modified)).then(|| a.user.clone())
    }

    /// Bytes `[start, end)` of `key`@`etag` (an object of `size` bytes) when every block of the
    /// range is cached and intact. A damaged block is dropped (and `None` returned: the caller
    /// fetches the range from COS).
    pub fn get(&self, key: &str, etag: &str, size: u64, start: u64, end: u64) -> Option<Bytes> {
        let end = end.min(size);
        if start >= end {
            return None;
        }
        let (first, last) = (start / BLOCK, (end - 1) / BLOCK);
        let (stem, crcs) = {
            let mut idx = self.index.lock();
            let e = self.entry(&mut idx, key, etag, size, false)?;
            let crcs: Option<Vec<u64>> = (first..=last).map(|i| e.blocks[i as usize]).collect();
            let stem = e.stem.clone();
            let crcs = crcs?;
            let id = ObjectId::new(key, etag);
            for i in first..=last {
                idx.lru.promote(&(id.clone(), i));
            }
            (stem, crcs)
        };
        let file = match File::open(self.data_path(&stem)) {
            Ok(f) => f,
            Err(e) => {
                self.warn("cannot open a cached object", e);
                self.forget_blocks(key, etag, first..=last);
                return None;
            }
        };
        let span_start = first * BLOCK;
        let span_end = ((last + 1) * BLOCK).min(size);
        let mut buf = vec![0u8; (span_end - span_start) as usize];
        if let Err(e) = file.read_exact_at(&mut buf, span_start) {
            self.warn("cannot read a cached object", e);
            self.forget_blocks(key, etag, first..=last);
            return None;
        }
        for (n, i) in (first..=last).enumerate() {
            let s = ((i - first) * BLOCK) as usize;
            let e = (s + BLOCK as usize).min(buf.len());
            if checksum(&buf[s..e]) != crcs[n] {
                log::warn!("data cache: block {i} of {key} is damaged; fetching it again");
                self.forget_blocks(key, etag, i..=i);
                return None;
            }
        }
        let buf = Bytes::from(buf);
        Some(buf.slice((start - span_start) as usize..(end - span_start) as usize))
    }

    fn forget_blocks(&self, key: &str, etag: &str, blocks: std::ops::RangeInclusive<u64>) {
        let mut idx = self.index.lock();
        let id = ObjectId::new(key, etag);
        let Some(e) = idx.objects.get_mut(&id) else {
            return;
        };
        let mut freed = 0;
        let stem = e.stem.clone();
        for i in blocks {
            if e.blocks.get(i as usize).copied().flatten().is_some() {
                e.blocks[i as usize] = None;
                e.checked = None;
                freed += e.block_len(i);
                let _ = self.journal(&stem, &format!("-{i}\n"));
            }
        }
        idx.used -= freed;
    }

    /// Stores `data`, bytes of `key`@`etag` (an object of `size` bytes) from `offset`: the
    /// whole blocks it holds (and the last, shorter block of the object).
    pub fn put(&self, key: &str, etag: &str, size: u64, offset: u64, data: &[u8]) {
        self.put_summed(key, etag, size, offset, data, &[]);
    }

    /// `put`, given the checksums of `data`'s pieces of `BLOCK` bytes from a block boundary
    /// (`ObjectClient::get_object_summed`) so as not to compute them again; sums that do not
    /// fit `data` are ignored.
    pub fn put_summed(
        &self,
        key: &str,
        etag: &str,
        size: u64,
        offset: u64,
        data: &[u8],
        sums: &[u64],
    ) {
        let sums = (offset % BLOCK == 0
            && sums.len() as u64 == (data.len() as u64).div_ceil(BLOCK))
        .then_some(sums);
        let first = offset.div_ceil(BLOCK);
        let end = offset + data.len() as u64;
        let mut blocks = Vec::new();
        let mut i = first;
        while i * BLOCK < end.min(size) {
            let (s, e) = (i * BLOCK, ((i + 1) * BLOCK).min(size));
            if e > end {
                break;
            }
            blocks.push((i, &data[(s - offset) as usize..(e - offset) as usize]));
            i += 1;
        }
        if blocks.is_empty() {
            return;
        }
        let new: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
        if new > self.max_bytes {
            return;
        }
        let id = ObjectId::new(key, etag);
        let stem = {
            let mut idx = self.index.lock();
            let Some(e) = self.entry(&mut idx, key, etag, size, true) else {
                return;
            };
            blocks.retain(|(i, _)| e.blocks[*i as usize].is_none());
            let stem = e.stem.clone();
            let new: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
            self.evict(&mut idx, new, Some(&id));
            idx.reserved += new;
            stem
        };
        let mut pending: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
        let file = OpenOptions::new().write(true).open(self.data_path(&stem));
        // Blocks go to disk by direct I/O: writing through the page cache is the slowest step
        // of a cold read on small machines (it held reads back to half their speed here), and
        // a block read back soon is read once anyway. Consecutive blocks go in one write.
        let direct = direct_io::open(&self.data_path(&stem));
        let failure = match file {
            Err(e) => Some(("cannot write a cached object", e)),
            Ok(file) => runs(&blocks)
                .find_map(|run| {
                    let first = run[0].0;
                    let crcs: Vec<u64> = run
                        .iter()
                        .map(|(i, b)| match sums {
                            Some(s) => s[(*i - offset / BLOCK) as usize],
                            None => checksum(b),
                        })
                        .collect();
                    let len: u64 = run.iter().map(|(_, b)| b.len() as u64).sum();
                    let at = (first * BLOCK - offset) as usize;
                    let bytes = &data[at..at + len as usize];
                    let lines: String = (first..)
                        .zip(&crcs)
                        .map(|(i, crc)| format!("{i} {crc}\n"))
                        .collect();
                    // No fsync: a block whose bytes did not reach the disk before a crash fails
                    // its checksum when read, and is fetched again.
                    let stored =
                        direct_io::write_most_direct(&file, direct.as_ref(), bytes, first * BLOCK)
                            .and_then(|_| self.journal(&stem, &lines));
                    if let Err(e) = stored {
                        // A full disk, most likely: punch what may have landed and stop caching.
                        punch(&file, first * BLOCK, len);
                        return Some(("cannot store a block", e));
                    }
                    pending -= len;
                    let mut idx = self.index.lock();
                    idx.reserved -= len;
                    for ((i, b), crc) in run.iter().zip(crcs) {
                        if let Some(e) = idx.objects.get_mut(&id)
                            && e.blocks[*i as usize].is_none()
                        {
                            e.blocks[*i as usize] = Some(crc);
                            e.checked = None;
                            idx.used += b.len() as u64;
                            idx.lru.put((id.clone(), *i), ());
                        }
                    }
                    None
                })
                .or_else(|| {
                    self.stamp_if_complete(&id, &stem, &file);
                    None
                }),
        };
        self.index.lock().reserved -= pending;
        if let Some((what, e)) = failure {
            self.warn(what, e);
        }
    }

    /// An entry this mount just completed (every block written from bytes it checksummed
    /// itself) needs no check before passthrough: its file is synced to disk (a crash then
    /// cannot leave the stamp without the bytes) and stamped.
    fn stamp_if_complete(&self, id: &ObjectId, stem: &str, file: &File) {
        let complete = |idx: &Index| {
            idx.objects
                .get(id)
                .is_some_and(|e| e.checked.is_none() && e.blocks.iter().all(Option::is_some))
        };
        if !complete(&self.index.lock()) || file.sync_data().is_err() {
            return;
        }
        let Some(stamp) = Stamp::of(file) else {
            return;
        };
        let mut idx = self.index.lock();
        if complete(&idx)
            && let Some(e) = idx.objects.get_mut(id)
        {
            e.checked = Some(stamp);
            let _ = self.journal(stem, &stamp.line());
        }
    }

    /// Makes room for `incoming` bytes: evicts the least recently used blocks until everything
    /// fits the bound.
    /// `keep`, the object being stored, loses blocks but not its files.
    fn evict(&self, idx: &mut Index, incoming: u64, keep: Option<&ObjectId>) {
        while idx.used + idx.reserved + incoming > self.max_bytes {
            let Some(((id, i), ())) = idx.lru.pop_lru() else {
                break;
            };
            let Some(e) = idx.objects.get_mut(&id) else {
                continue;
            };
            if e.blocks[i as usize].take().is_none() {
                continue;
            }
            e.checked = None;
            let len = e.block_len(i);
            let stem = e.stem.clone();
            let whole_object_gone = e.blocks.iter().all(Option::is_none) && keep != Some(&id);
            idx.used -= len;
            // A file read by passthrough goes whole: its open descriptors keep the unlinked
            // file, where punching would hand them zeros.
            if whole_object_gone || idx.pinned.contains_key(&id) {
                self.drop_object(idx, &id);
            } else {
                if let Ok(f) = OpenOptions::new().write(true).open(self.data_path(&stem)) {
                    punch(&f, i * BLOCK, len);
                }
                let _ = self.journal(&stem, &format!("-{i}\n"));
            }
        }
    }

    /// Whether every block of `key` at `etag` is held (by the index; nothing is read).
    pub fn holds_all(&self, key: &str, etag: &str, size: u64) -> bool {
        let mut idx = self.index.lock();
        self.entry(&mut idx, key, etag, size, false)
            .is_some_and(|e| e.blocks.iter().all(Option::is_some))
    }

    /// The data file of `key`@`etag` when every block of it is cached and intact, opened for
    /// reading and pinned until the `Pinned` is dropped (for FUSE passthrough: the kernel reads
    /// it without us, so no block may change or go while it is open).
    pub fn complete_file(self: &Arc<Self>, key: &str, etag: &str, size: u64) -> Option<Pinned> {
        let id = ObjectId::new(key, etag);
        let (stem, crcs, checked) = {
            let mut idx = self.index.lock();
            let e = self.entry(&mut idx, key, etag, size, false)?;
            let crcs: Vec<u64> = e.blocks.iter().copied().collect::<Option<_>>()?;
            let out = (e.stem.clone(), crcs, e.checked);
            *idx.pinned.entry(id.clone()).or_default() += 1;
            out
        };
        let mut pinned = Pinned {
            file: None,
            cache: Arc::downgrade(self),
            id,
        };
        let file = File::open(self.data_path(&stem)).ok()?;
        let now = Stamp::of(&file)?;
        if checked != Some(now) {
            self.check_all(&pinned.id, size, &stem, &file, &crcs, now)?;
        }
        pinned.file = Some(file);
        Some(pinned)
    }

    /// Checks every block of `file` (the data file of `id`, `size` bytes, as `stamp` says it is) against
    /// `crcs`, one block in memory at a time. Intact: the entry (and its journal) records the
    /// stamp; damaged: the block is dropped.
    fn check_all(
        &self,
        id: &ObjectId,
        size: u64,
        stem: &str,
        file: &File,
        crcs: &[u64],
        stamp: Stamp,
    ) -> Option<()> {
        log::debug!("data cache: checking {} before passthrough", id.key);
        let mut buf = vec![0u8; BLOCK as usize];
        for (i, crc) in crcs.iter().enumerate() {
            let start = i as u64 * BLOCK;
            let b = &mut buf[..(size - start).min(BLOCK) as usize];
            if file.read_exact_at(b, start).is_err() || checksum(b) != *crc {
                log::warn!(
                    "data cache: block {i} of {} is damaged; fetching it again",
                    id.key
                );
                self.forget_blocks(&id.key, &id.etag, i as u64..=i as u64);
                return None;
            }
        }
        let mut idx = self.index.lock();
        let e = idx.objects.get_mut(id)?;
        // Unless a block was stored or dropped meanwhile.
        if e.blocks
            .iter()
            .copied()
            .collect::<Option<Vec<u64>>>()
            .as_deref()
            == Some(crcs)
        {
            e.checked = Some(stamp);
            let _ = self.journal(stem, &stamp.line());
        }
        Some(())
    }

    /// `from`@`from_etag` was copied on the server to `to`, which is `to_etag` now (a rename):
    /// the same bytes, so its entry moves to the new key, files and journal included. An entry
    /// read by passthrough meanwhile is dropped instead (its readers keep the unlinked file).
    pub fn rename(&self, from: &str, from_etag: &str, to: &str, to_etag: &str) {
        let old = ObjectId::new(from, from_etag);
        let new = ObjectId::new(to, to_etag);
        let mut idx = self.index.lock();
        self.drop_versions(&mut idx, to);
        if idx.pinned.contains_key(&old) || !idx.objects.contains_key(&old) {
            return self.drop_versions(&mut idx, from);
        }
        let stem = new.file_stem();
        let (old_stem, size) = {
            let e = &idx.objects[&old];
            (e.stem.clone(), e.size)
        };
        let header = serde_json::json!({
            "format": FORMAT, "key": to, "etag": to_etag, "size": size,
        });
        let moved = std::fs::read_to_string(self.meta_path(&old_stem))
            .map(|j| {
                let blocks = j.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
                format!("{header}\n{blocks}")
            })
            .and_then(|j| std::fs::write(self.meta_path(&stem), j))
            .and_then(|_| std::fs::rename(self.data_path(&old_stem), self.data_path(&stem)));
        if let Err(err) = moved {
            let _ = std::fs::remove_file(self.meta_path(&stem));
            self.drop_versions(&mut idx, from);
            drop(idx);
            return self.warn("cannot move an entry", err);
        }
        let _ = std::fs::remove_file(self.meta_path(&old_stem));
        let mut e = idx.objects.remove(&old).expect("checked above");
        self.drop_versions(&mut idx, from);
        for (i, b) in e.blocks.iter().enumerate() {
            if b.is_some() && idx.lru.pop(&(old.clone(), i as u64)).is_some() {
                idx.lru.put((new.clone(), i as u64), ());
            }
        }
        e.stem = stem;
        idx.by_key.insert(to.to_string(), vec![new.clone()]);
        idx.objects.insert(new, e);
    }

    /// Drops every cached version of `key` (removed or replaced by this mount).
    pub fn forget_key(&self, key: &str) {
        self.drop_versions(&mut self.index.lock(), key);
    }

    /// Drops every version of `key` still in the index.
    fn drop_versions(&self, idx: &mut Index, key: &str) {
        for id in idx.by_key.remove(key).unwrap_or_default() {
            self.drop_object(idx, &id);
        }
    }
}

/// A cached object's data file, open and pinned for passthrough (see `complete_file`).
pub struct Pinned {
    file: Option<File>,
    cache: std::sync::Weak<DataCache>,
    id: ObjectId,
}

impl Pinned {
    /// The data file, open for reading.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("set once opened")
    }
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("key", &self.id.key).finish()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let Some(c) = self.cache.upgrade() else {
            return;
        };
        let mut idx = c.index.lock();
        if let Some(n) = idx.pinned.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                idx.pinned.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// The journal of an existing cache holds these: the function must not change.
    #[test]
    fn the_checksum_is_xxh3_64() {
        assert_eq!(checksum(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(checksum(&bytes(BLOCK as usize, 1)), 0x7F32_B9D3_AFB8_57BA);
    }

    #[test]
    fn blocks_round_trip_are_checked_evicted_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * BLOCK + 100;
        let data = bytes(size as usize, 1);
        {
            let c = DataCache::open(dir.path(), Some(10 * BLOCK)).unwrap();
            assert!(
                DataCache::open(dir.path(), None).is_err(),
                "one mount at a time"
            );
            assert_eq!(c.get("k", "e1", size, 0, 10), None);
            c.put("k", "e1", size, 0, &data);
            assert_eq!(c.used_bytes(), size);
            assert_eq!(
                c.get("k", "e1", size, 5, 2 * BLOCK + 7).as_deref(),
                Some(&data[5..(2 * BLOCK + 7) as usize])
            );
            assert!(c.complete_file("k", "e1", size).is_some());
            // Another version of the key replaces it.
            assert_eq!(c.get("k", "e2", size, 0, 10), None);
        }
        let c = DataCache::open(dir.path(), Some(10 * BLOCK)).unwrap();
        assert_eq!(
            c.get("k", "e1", size, 3 * BLOCK, size).as_deref(),
            Some(&data[(3 * BLOCK) as usize..]),
            "read back after a reopen"
        );
        // A damaged block is detected and dropped, never returned.
        let stem = ObjectId::new("k", "e1").file_stem();
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join("v1").join(format!("{stem}.data")))
            .unwrap();
        f.write_all_at(b"garbage", BLOCK + 3).unwrap();
        assert_eq!(c.get("k", "e1", size, BLOCK, BLOCK + 10), None);
        assert_eq!(c.get("k", "e1", size, 0, 10).as_deref(), Some(&data[..10]));
        assert!(c.complete_file("k", "e1", size).is_none());
        // The bound holds: the least recently used blocks go.
        let other = bytes((8 * BLOCK) as usize, 2);
        c.put("other", "x", 8 * BLOCK, 0, &other);
        assert!(c.used_bytes() <= 10 * BLOCK, "{}", c.used_bytes());
        assert!(c.get("other", "x", 8 * BLOCK, 0, 8 * BLOCK).is_some());
        c.forget_key("other");
        assert_eq!(c.get("other", "x", 8 * BLOCK, 0, 1), None);
    }

    #[test]
    fn a_renamed_entry_moves_with_its_blocks_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * BLOCK + 9;
        let data = bytes(size as usize, 5);
        {
            let c = DataCache::open(dir.path(), Some(16 * BLOCK)).unwrap();
            c.put("a", "e1", size, 0, &data);
            c.rename("a", "e1", "b", "e2");
            assert!(c.get("a", "e1", size, 0, 1).is_none());
            assert_eq!(c.get("b", "e2", size, 0, size).as_deref(), Some(&data[..]));
            assert_eq!(c.used_bytes(), size);
        }
        let c = DataCache::open(dir.path(), Some(16 * BLOCK)).unwrap();
        assert_eq!(c.get("b", "e2", size, 5, 50).as_deref(), Some(&data[5..50]));
        assert!(c.get("a", "e1", size, 0, 1).is_none());
        assert_eq!(c.used_bytes(), size);
    }

    #[test]
    fn a_passthrough_file_is_checked_when_it_changed_and_survives_eviction_whole() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * BLOCK + 5;
        let data = bytes(size as usize, 3);
        let c = DataCache::open(dir.path(), Some(16 * BLOCK)).unwrap();
        c.put("k", "e", size, 0, &data);
        let stem = ObjectId::new("k", "e").file_stem();
        let path = dir.path().join("v1").join(format!("{stem}.data"));
        drop(c.complete_file("k", "e", size).expect("complete"));
        // Changed after its check: checked again, and the damage found.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"garbage", 7).unwrap();
        assert!(c.complete_file("k", "e", size).is_none());
        c.put("k", "e", size, 0, &data);
        // Pinned: evicting it removes the whole entry, and the open file keeps every byte.
        let pinned = c.complete_file("k", "e", size).expect("complete again");
        c.put("big", "x", 15 * BLOCK, 0, &bytes((15 * BLOCK) as usize, 4));
        assert!(c.get("k", "e", size, 0, 1).is_none(), "evicted");
        assert!(!path.exists(), "removed whole, not punched");
        let mut buf = vec![0u8; size as usize];
        pinned.file().read_exact_at(&mut buf, 0).unwrap();
        assert!(buf == data);
    }

    #[test]
    fn entries_of_another_format_are_removed_with_their_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let size = BLOCK + 3;
        let stem = ObjectId::new("k", "e").file_stem();
        let v1 = dir.path().join("v1");
        std::fs::create_dir_all(&v1).unwrap();
        let header = serde_json::json!({"format": "cosmount-cache-v1", "key": "k", "etag": "e", "size": size});
        std::fs::write(
            v1.join(format!("{stem}.meta")),
            format!("{header}\n0 123\n"),
        )
        .unwrap();
        std::fs::write(v1.join(format!("{stem}.data")), bytes(size as usize, 1)).unwrap();
        let c = DataCache::open(dir.path(), Some(4 * BLOCK)).unwrap();
        assert_eq!(c.used_bytes(), 0);
        assert!(c.get("k", "e", size, 0, 1).is_none());
        assert!(!v1.join(format!("{stem}.meta")).exists());
        assert!(!v1.join(format!("{stem}.data")).exists());
        // Stored again, in this format, it reads back after a reopen.
        let data = bytes(size as usize, 2);
        c.put("k", "e", size, 0, &data);
        drop(c);
        let c = DataCache::open(dir.path(), Some(4 * BLOCK)).unwrap();
        assert_eq!(c.get("k", "e", size, 0, size).as_deref(), Some(&data[..]));
    }
}
