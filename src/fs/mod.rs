//! The filesystem core: files and directories over COS objects (design.md §2–§4). It knows
//! nothing of fuser: `fuse.rs` translates kernel requests into calls on `Filesystem` and its
//! answers (`Attr`, `DirEntry`, `FsError`) back. Every method is async and runs on the mount's
//! tokio runtime.
//!
//! `Filesystem` is one struct whose methods live in a file per concern: `lookup.rs` (what a
//! name is, attributes, symlink targets), `namespace.rs` (creating, removing and renaming
//! names), `handles.rs` (open descriptors: open, read, write, flush, fsync, release),
//! `setattr.rs` (chmod, chown, utimens, truncate) and `readdir.rs` (directory handles). The
//! state they share is here: the inode table, the metadata cache, the listings, and the table
//! of open files (`open_file.rs`), one per inode with open descriptors.

pub mod acl;
pub mod ahead;
pub mod attrs;
pub mod data_cache;
pub mod dir;
pub mod error;
mod handles;
pub mod inode;
mod lookup;
pub mod meta_cache;
mod namespace;
pub mod open_file;
pub mod operations;
pub mod ranges;
pub mod read;
mod readdir;
pub mod service;
mod setattr;
pub mod write;
pub mod xattr;

pub use handles::Written;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::cos::ObjectClient;
use attrs::{Defaults, Ino, Kind, MetaAttrs};
use dir::{DirEntry, DirHandle, ListingCache, SkipLog};
use error::{FsError, FsResult};
use inode::InodeTable;
use meta_cache::{MetaCache, Stat};
use open_file::{FileHandle, OpenFile};
use read::PrefetchConfig;

/// The filesystem's settings (the mount options after parsing; config.rs fills it).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix mounted as the root: `""` or ending in `/`.
    pub prefix: String,
    pub defaults: Defaults,
    /// `None`: metadata never expires (`indefinite`, for buckets only this mount writes).
    pub metadata_ttl: Option<Duration>,
    /// How long a name found missing is believed missing (`--negative-ttl`). Zero by default:
    /// an object another client creates is found by the next lookup.
    pub negative_ttl: Duration,
    /// How long a complete directory listing is reused (`--listing-ttl`): a repeated `ls`, a
    /// lookup of a name the listing lacks, a directory this mount made and holds as empty.
    /// Zero by default: every readdir lists, and listings answer no lookup of a missing name.
    pub listing_ttl: Duration,
    /// Entries in the metadata cache (each a few hundred bytes).
    pub cache_entries: usize,
    pub part_size: u64,
    /// Part uploads in flight per mount.
    pub max_concurrency: usize,
    pub prefetch: PrefetchConfig,
    /// Bytes of prefetched data per mount.
    pub prefetch_memory: u64,
    pub cache_dir: PathBuf,
    pub read_only: bool,
    /// Trust listings alone: no HEAD per listed entry, so modes, owners and symlinks of
    /// objects not looked up yet show defaults (`--fast-listing`).
    pub fast_listing: bool,
    /// Files bypass the kernel's page cache (`--direct-io`), except passthrough ones.
    pub direct_io: bool,
    /// Extended attributes are stored (`x-cos-meta-xattr`); off with `--no-xattr` (ENOTSUP).
    pub xattrs: bool,
    /// Read files the data cache holds whole by FUSE passthrough, where the kernel can.
    pub passthrough: bool,
    /// Fetch the next small files of a directory read in listing order (`ahead.rs`); off with
    /// `--no-read-ahead-files`.
    pub files_ahead: bool,
    /// The local data cache (`--data-cache DIR`), opened by the mount.
    pub data_cache: Option<Arc<data_cache::DataCache>>,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            prefix: String::new(),
            defaults: Defaults {
                uid: 0,
                gid: 0,
                file_mode: 0o644,
                dir_mode: 0o755,
            },
            metadata_ttl: Some(Duration::from_secs(1)),
            negative_ttl: Duration::ZERO,
            listing_ttl: Duration::ZERO,
            cache_entries: 100_000,
            part_size: 8 << 20,
            max_concurrency: 8,
            prefetch: PrefetchConfig::default(),
            prefetch_memory: 512 << 20,
            cache_dir: std::env::temp_dir().join("cosmount"),
            read_only: false,
            fast_listing: false,
            direct_io: false,
            xattrs: true,
            passthrough: true,
            files_ahead: true,
            data_cache: None,
        }
    }
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub exclusive: bool,
    pub append: bool,
    /// The kernel opens the file to execute it (`execve`): while that program runs, the file's
    /// content may not change (ETXTBSY).
    pub exec: bool,
    /// The opening thread's id as the kernel reports it (to tell its process's closes from
    /// those of children that inherited the descriptor; see `flush`).
    pub caller: Option<u32>,
    /// The caller may not keep set-ID bits (not root: uid 0 stands for CAP_FSETID), so a
    /// truncation at open clears them, as on a local file system. The kernel leaves that to
    /// the file system when the open itself truncates (atomic O_TRUNC).
    pub drops_setid: bool,
}

impl OpenMode {
    /// The descriptor may change the content: it writes, or it truncates at open.
    pub fn writable(&self) -> bool {
        self.write || self.truncate
    }
}

/// An open descriptor: its handle, whether the kernel may keep the file's cached pages, and
/// how the kernel does its I/O.
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    pub io: open_file::Io,
}

/// Who asks for a create-type call (create, mkdir, mknod, symlink): the new entry's owner and
/// the umask that applies unless its directory has a default ACL.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub umask: u32,
}

/// A time to set: a given one, or the time of the call (`UTIME_NOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    At(SystemTime),
    Now,
}

impl SetTime {
    fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            SetTime::At(t) => t,
            SetTime::Now => now,
        }
    }
}

/// Attribute changes of a setattr call; `None` leaves the attribute as it is (`UTIME_OMIT`).
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SetTime>,
    pub atime: Option<SetTime>,
}

/// One entry returned by `readdir`, with the offset of the entry after it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub next_offset: u64,
    pub name: String,
    pub kind: Kind,
    /// `None` for `.` and `..`.
    pub entry: Option<DirEntry>,
    pub ino: Ino,
}

/// `statfs` figures: large constants, as other object-store mounts report.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

impl StatFs {
    /// What every mount reports.
    pub const FIGURES: StatFs = StatFs {
        blocks: 1 << 40,
        bfree: 1 << 40,
        files: 1 << 32,
        ffree: 1 << 32,
        bsize: 4096,
        namelen: dir::NAME_MAX as u32,
    };
}

#[derive(Clone)]
enum Handle {
    File(Arc<FileHandle>),
    Dir(Arc<tokio::sync::Mutex<DirHandle>>),
}

/// Directories whose entries this mount changed, with when (their mtime and ctime): kept in
/// memory, not in COS, for the life of the mount (bounded: the least recently changed go).
const DIR_TIMES: usize = 100_000;

pub struct Filesystem {
    client: Arc<dyn ObjectClient>,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    cache: MetaCache,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// The open-file state of every inode with open descriptors.
    files: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    upload_slots: Arc<Semaphore>,
    /// Memory lent to sequential writers (`write::TAIL_MEMORY`), in KiB.
    tail_memory: Arc<Semaphore>,
    prefetch_memory: Arc<Semaphore>,
    skips: SkipLog,
    /// Attributes set on the mount root: COS has no object for the root of a bucket, so they
    /// live in memory for the life of the mount.
    root_attrs: Mutex<MetaAttrs>,
    listings: Mutex<ListingCache>,
    /// Directories whose listing is being refreshed (see `refresh_small_listing`).
    refreshing: Mutex<HashSet<String>>,
    /// When this mount last added, removed or renamed an entry of a directory (by key).
    dir_times: Mutex<lru::LruCache<String, SystemTime>>,
    /// The kernel takes FUSE passthrough (and the data cache is on): a read-only open of a
    /// file the cache holds whole is read by the kernel from the cache's copy.
    passthrough: AtomicBool,
    /// Keys this mount opened for writing (the most recent `WRITTEN_KEYS`): they are never
    /// read by passthrough, which would refuse the next write while a reader is open (a log
    /// this mount appends to and someone follows with `tail -f`).
    written_keys: Mutex<lru::LruCache<String, ()>>,
    /// Small files fetched ahead of a program reading a directory in order (`ahead.rs`).
    ahead: ahead::FilesAhead,
}

/// How many keys `Filesystem::written_keys` remembers.
const WRITTEN_KEYS: usize = 10_000;

fn join_key(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The longest object key COS accepts, in bytes (cos-protocol.md §4).
const MAX_KEY: usize = 850;

impl Filesystem {
    pub fn new(client: Arc<dyn ObjectClient>, cfg: FsConfig) -> Self {
        let cache = MetaCache::new(cfg.cache_entries, cfg.metadata_ttl, cfg.negative_ttl);
        let permits = (cfg.prefetch_memory / 1024).clamp(16 * 1024, u32::MAX as u64 / 2) as usize;
        Filesystem {
            client,
            upload_slots: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
            prefetch_memory: Arc::new(Semaphore::new(permits)),
            tail_memory: Arc::new(Semaphore::new((write::TAIL_MEMORY / 1024) as usize)),
            cfg,
            inodes: Mutex::new(InodeTable::new()),
            cache,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            files: Mutex::new(HashMap::new()),
            skips: SkipLog::default(),
            root_attrs: Mutex::new(MetaAttrs::default()),
            listings: Mutex::new(ListingCache::default()),
            refreshing: Mutex::new(Default::default()),
            dir_times: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(DIR_TIMES).expect("non-zero"),
            )),
            passthrough: AtomicBool::new(false),
            written_keys: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(WRITTEN_KEYS).expect("non-zero"),
            )),
            ahead: ahead::FilesAhead::default(),
        }
    }

    /// Whether a passthrough open is worth offering: the data cache is on.
    pub fn wants_passthrough(&self) -> bool {
        self.cfg.passthrough && self.cfg.data_cache.is_some()
    }

    /// Turns passthrough on (the kernel took it) or off (registering a file failed).
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, Ordering::Relaxed);
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// How long the kernel may cache entries and attributes: the metadata TTL.
    pub fn ttl(&self) -> Duration {
        self.cfg
            .metadata_ttl
            .unwrap_or(Duration::from_secs(365 * 24 * 3600))
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The object key of an inode's path: the mount prefix plus the path (no trailing slash).
    fn key_of(&self, ino: Ino) -> FsResult<String> {
        let path = self.inodes.lock().path(ino).ok_or(FsError::Stale)?;
        Ok(self.key_of_path(&path))
    }

    fn key_of_path(&self, path: &str) -> String {
        if path.is_empty() {
            self.cfg.prefix.trim_end_matches('/').to_string()
        } else {
            format!("{}{}", self.cfg.prefix, path)
        }
    }

    fn child_key(&self, parent: Ino, name: &str) -> FsResult<String> {
        if !dir::valid_name(name) {
            return Err(if name.len() > dir::NAME_MAX {
                FsError::NameTooLong
            } else {
                FsError::Invalid("bad file name")
            });
        }
        let path = self.inodes.lock().path(parent).ok_or(FsError::Stale)?;
        let key = self.key_of_path(&join_key(&path, name));
        // A directory's marker is one byte longer than its key.
        if key.len() + 1 > MAX_KEY {
            return Err(FsError::NameTooLong);
        }
        Ok(key)
    }

    /// The kind of a known inode (ESTALE once the kernel's inode is forgotten here).
    fn kind_of(&self, ino: Ino) -> FsResult<Kind> {
        self.kind_and_removal(ino).map(|(k, _)| k)
    }

    /// The kind of a known inode and whether it was removed (or replaced) while still open.
    fn kind_and_removal(&self, ino: Ino) -> FsResult<(Kind, bool)> {
        self.inodes
            .lock()
            .get(ino)
            .map(|n| (n.kind, n.unlinked))
            .ok_or(FsError::Stale)
    }

    /// The prefix listing a directory's children.
    fn dir_prefix(&self, key: &str) -> String {
        if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        }
    }

    /// `a/b/c` → (`a/b/`, `c`): the listing prefix of the parent and the name.
    fn split_key(key: &str) -> (String, String) {
        match key.rfind('/') {
            Some(i) => (key[..=i].to_string(), key[i + 1..].to_string()),
            None => (String::new(), key.to_string()),
        }
    }

    /// Forgets what is known of `key` (the next lookup asks COS).
    fn unlearn(&self, key: &str) {
        self.cache.remove(key);
        self.ahead.forget(key);
    }

    /// Records an own, completed change of `key`: the metadata cache and the parent's cached
    /// listing learn it at once.
    fn learn(&self, key: &str, stat: Option<Stat>) {
        self.ahead.forget(key);
        match &stat {
            Some(s) => self.cache.insert(key, s.clone()),
            None => self.cache.insert_missing(key),
        }
        let (parent, name) = Self::split_key(key);
        self.listings.lock().update(&parent, &name, stat);
    }

    /// What `f` makes of the fresh cached listing of directory `prefix`, if there is one. Only
    /// with `--listing-ttl`: a reused listing hides what other clients added or removed since.
    fn reused_listing<T>(&self, prefix: &str, f: impl FnOnce(&DirHandle) -> T) -> Option<T> {
        if self.cfg.listing_ttl.is_zero() {
            return None;
        }
        let mut listings = self.listings.lock();
        listings.fresh(prefix, Some(self.cfg.listing_ttl)).map(f)
    }

    /// Forgets what is known of `key` and, for a directory, everything under it, including
    /// cached listings (a change whose outcome this mount does not know entry by entry).
    fn unlearn_tree(&self, key: &str) {
        self.unlearn_below(key);
        let (parent, _) = Self::split_key(key);
        self.listings.lock().forget(&parent, false);
    }

    /// Forgets what is known of `key`, everything under it and the listings of it and under
    /// it, but not the listing of its parent (a removal `learn` then applies to it).
    fn unlearn_below(&self, key: &str) {
        self.cache.remove_tree(key);
        self.ahead.forget_tree(key, &self.dir_prefix(key));
        self.listings.lock().forget(&self.dir_prefix(key), true);
    }

    /// An entry of the directory holding `key` was added, removed or renamed now: its mtime
    /// and ctime move (kept in memory, see `DIR_TIMES`).
    fn touch_parent(&self, key: &str) {
        let (parent, _) = Self::split_key(key);
        let parent = parent.trim_end_matches('/').to_string();
        self.dir_times.lock().put(parent, SystemTime::now());
    }

    /// When this mount last changed the entries of directory `key`.
    fn dir_changed_at(&self, key: &str) -> Option<SystemTime> {
        self.dir_times.lock().peek(key).copied()
    }

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, h);
        fh
    }

    /// Whether `ino` is `ancestor` or lies under it.
    fn is_under(&self, ino: Ino, ancestor: Ino) -> bool {
        let inodes = self.inodes.lock();
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == ancestor {
                return true;
            }
            match inodes.get(cur) {
                Some(n) if cur != attrs::ROOT_INO => cur = n.parent,
                _ => return false,
            }
        }
        false
    }

    pub fn statfs(&self) -> StatFs {
        StatFs::FIGURES
    }

    /// At unmount: commits every dirty file still open (or aborts its upload).
    pub async fn shutdown(&self) {
        let fhs: Vec<u64> = self.handles.lock().keys().copied().collect();
        for fh in fhs {
            let is_file = matches!(self.handles.lock().get(&fh), Some(Handle::File(..)));
            if is_file {
                if let Err(e) = self.release(fh).await {
                    log::error!("unmount: a file open for writing could not be stored: {e}");
                }
            } else {
                self.releasedir(fh);
            }
        }
        if let Some(c) = &self.cfg.data_cache {
            c.close();
        }
    }
}
