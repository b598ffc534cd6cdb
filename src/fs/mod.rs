//! The filesystem core: files and directories over COS objects (design.md §2–§4). It knows
//! nothing of fuser: `fuse.rs` translates kernel requests into calls on `Filesystem` and its
//! answers (`Attr`, `DirEntry`, `FsError`) back. Every method is async and runs on the mount's
//! tokio runtime.

pub mod attrs;
pub mod dir;
pub mod error;
pub mod inode;
pub mod meta_cache;
pub mod ranges;
pub mod read;
pub mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::cos::client::list_all;
use crate::cos::{
    Body, CopyObject, GetObject, ListObjects, ObjectClient, ObjectMetadata, PutObject,
};
use attrs::{Attr, Defaults, Ino, Kind, MetaAttrs, ROOT_INO, attr_from, mode_bits};
use dir::{
    DirEntry, DirHandle, FIRST_ENTRY_OFFSET, ListingCache, SkipLog, implicit_dir_time, valid_name,
};
use error::{FsError, FsResult};
use inode::InodeTable;
use meta_cache::{Cached, DirStat, FileStat, MetaCache, Stat};
use read::{PrefetchConfig, Prefetcher, Version};
use write::{Base, WriteConfig, WriteHandle};

/// The filesystem's settings (the mount options after parsing; config.rs fills it).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix mounted as the root: `""` or ending in `/`.
    pub prefix: String,
    pub defaults: Defaults,
    /// `None`: metadata never expires (`indefinite`, for buckets only this mount writes).
    pub metadata_ttl: Option<Duration>,
    pub negative_ttl: Duration,
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
            negative_ttl: Duration::from_secs(1),
            cache_entries: 100_000,
            part_size: 8 << 20,
            max_concurrency: 8,
            prefetch: PrefetchConfig::default(),
            prefetch_memory: 512 << 20,
            cache_dir: std::env::temp_dir().join("cosmount"),
            read_only: false,
            fast_listing: false,
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
    /// The opening thread's id as the kernel reports it (to tell its process's closes from
    /// those of children that inherited the descriptor; see `flush`).
    pub caller: Option<u32>,
}

/// The process (thread group) of a thread id, from /proc; `None` when it cannot be told (the
/// thread is gone, or lives in another pid namespace).
fn process_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Attribute changes of a setattr call.
#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
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

struct FileHandle {
    ino: Ino,
    /// The thread that opened the handle, when known.
    opener: Option<u32>,
    /// A descriptor was closed (flush) and nothing was written through the handle since:
    /// maybe the program is done with it and only the release is still to come.
    flushed: bool,
    version: Option<Version>,
    reader: Option<Prefetcher>,
    writer: Option<WriteHandle>,
}

type SharedFile = Arc<tokio::sync::Mutex<FileHandle>>;

#[derive(Clone)]
enum Handle {
    /// The inode is kept outside the lock: handles are found per file without waiting for
    /// busy ones.
    File(Ino, SharedFile),
    Dir(Arc<tokio::sync::Mutex<DirHandle>>),
}

/// What a cached listing says of a name.
#[derive(Debug, PartialEq, Eq)]
enum InListing {
    /// No fresh listing of the parent.
    Unknown,
    /// A fresh listing does not have it.
    Absent,
    Known(Stat),
    /// A file whose metadata the listing does not carry.
    File,
    /// A directory whose marker was not looked at.
    Dir,
}

/// Directories of fewer entries are listed again rather than asked about name by name (at
/// most this many / 1000 pages per refresh).
const SMALL_LISTING: usize = 10_000;
/// HEADs in flight while a listing page is completed with each entry's metadata.
const LISTING_HEAD_CONCURRENCY: usize = 64;
/// Keys renamed in parallel when a directory moves.
const RENAME_CONCURRENCY: usize = 16;
/// Longest symlink target read back (PATH_MAX).
const MAX_SYMLINK: u64 = 4096;

pub struct Filesystem {
    client: Arc<dyn ObjectClient>,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    cache: MetaCache,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    upload_slots: Arc<Semaphore>,
    /// Memory lent to sequential writers (`write::TAIL_MEMORY`), in KiB.
    tail_memory: Arc<Semaphore>,
    prefetch_memory: Arc<Semaphore>,
    skips: SkipLog,
    /// Attributes set on the mount root: COS has no object for the root of a bucket, so they
    /// live in memory for the life of the mount.
    root_attrs: Mutex<MetaAttrs>,
    listings: Mutex<ListingCache>,
    /// File handles being released (out of `handles`, commit in progress).
    releasing: Mutex<Vec<(Ino, SharedFile)>>,
    /// Directories whose listing is being refreshed (see `refresh_small_listing`).
    refreshing: Mutex<std::collections::HashSet<String>>,
}

fn join_key(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

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
            skips: SkipLog::default(),
            root_attrs: Mutex::new(MetaAttrs::default()),
            listings: Mutex::new(ListingCache::default()),
            refreshing: Mutex::new(Default::default()),
            releasing: Mutex::new(Vec::new()),
        }
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
        if !valid_name(name) {
            return Err(if name.len() > dir::NAME_MAX {
                FsError::NameTooLong
            } else {
                FsError::Invalid("bad file name")
            });
        }
        let path = self.inodes.lock().path(parent).ok_or(FsError::Stale)?;
        Ok(self.key_of_path(&join_key(&path, name)))
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

    /// Records an own, completed change of `key`: the metadata cache and the parent's cached
    /// listing learn it at once.
    fn learn(&self, key: &str, stat: Option<Stat>) {
        match &stat {
            Some(s) => self.cache.insert(key, s.clone()),
            None => self.cache.insert_missing(key),
        }
        let (parent, name) = Self::split_key(key);
        self.listings.lock().update(&parent, &name, stat);
    }

    /// Forgets what is known of `key` and, for a directory, everything under it, including
    /// cached listings (a change whose outcome this mount does not know entry by entry).
    fn unlearn_tree(&self, key: &str) {
        self.cache.remove_tree(key);
        let (parent, _) = Self::split_key(key);
        let mut listings = self.listings.lock();
        listings.forget(&parent, false);
        listings.forget(&self.dir_prefix(key), true);
    }

    /// What the parent's fresh cached listing says of `key`.
    fn listed(&self, key: &str) -> InListing {
        let (parent, name) = Self::split_key(key);
        let mut listings = self.listings.lock();
        let Some(d) = listings.fresh(&parent, Some(self.cfg.negative_ttl)) else {
            return InListing::Unknown;
        };
        match d.get(&name) {
            None => InListing::Absent,
            Some(e) => match &e.stat {
                Stat::File(f) if f.meta.is_some() => InListing::Known(e.stat.clone()),
                Stat::Dir(dir) if dir.probed => InListing::Known(e.stat.clone()),
                Stat::File(_) => InListing::File,
                Stat::Dir(_) => InListing::Dir,
            },
        }
    }

    /// When the parent of `key` was listed before and is not large, lists it again (a few
    /// pages) instead of asking about one name (two requests): a directory being filled with
    /// new files then costs one listing per negative TTL, not a HEAD and a LIST per file. One
    /// refresh per directory at a time; others ask about their name.
    async fn refresh_small_listing(&self, key: &str) -> bool {
        let (parent, _) = Self::split_key(key);
        let small = self
            .listings
            .lock()
            .fresh(&parent, None)
            .is_some_and(|d| d.entries.len() < SMALL_LISTING);
        if !small || !self.refreshing.lock().insert(parent.clone()) {
            return false;
        }
        let asked = Instant::now();
        let mut d = DirHandle::new(0, parent.clone());
        let mut ok = true;
        while !d.done {
            let page = self
                .client
                .list_objects(
                    ListObjects::new(parent.clone())
                        .delimiter("/")
                        .marker(d.marker.clone().unwrap_or_default()),
                )
                .await;
            match page {
                Ok(page) => {
                    for (k, stat) in d.absorb(page, &self.skips) {
                        self.cache.insert_observed(&k, stat, asked);
                    }
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            if d.entries.len() >= SMALL_LISTING {
                ok = false;
                break;
            }
        }
        {
            let mut listings = self.listings.lock();
            if ok {
                listings.store(&parent, &d, asked);
            } else {
                listings.forget(&parent, false);
            }
        }
        self.refreshing.lock().remove(&parent);
        ok
    }

    // ---- resolving paths ----

    /// What `key` is: a file, a directory, or nothing. HEAD `key` and LIST `key/` run in
    /// parallel (design.md §2); a directory wins over a file of the same name.
    async fn resolve(&self, key: &str) -> FsResult<Option<Stat>> {
        match self.cache.get(key) {
            Cached::Found(s) => return Ok(Some(s)),
            Cached::Missing => return Ok(None),
            Cached::Miss => {}
        }
        let mut listed = self.listed(key);
        if listed == InListing::Unknown && self.refresh_small_listing(key).await {
            listed = self.listed(key);
        }
        let asked = Instant::now();
        let stat = match listed {
            InListing::Absent => return Ok(None),
            InListing::Known(s) => return Ok(Some(s)),
            // The listing says which one it is: one HEAD gives the rest.
            InListing::File => self.file_stat(key).await?,
            InListing::Dir => Some(self.dir_stat(key).await?),
            InListing::Unknown => self.resolve_uncached(key).await?,
        };
        match &stat {
            Some(s) => self.cache.insert_observed(key, s.clone(), asked),
            None => self.cache.insert_missing_observed(key, asked),
        }
        Ok(stat)
    }

    async fn resolve_uncached(&self, key: &str) -> FsResult<Option<Stat>> {
        let prefix = format!("{key}/");
        let (head, list) = tokio::join!(
            self.client.head_object(key),
            self.client
                .list_objects(ListObjects::new(prefix.clone()).max_keys(1))
        );
        let list = list.map_err(FsError::Cos)?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            if list.objects.first().is_some_and(|o| o.key == prefix) {
                return Ok(Some(self.dir_stat(key).await?));
            }
            return Ok(Some(Stat::Dir(DirStat::probed(None))));
        }
        self.file_from_head(key, head)
    }

    /// A file's full stat (HEAD); `None` when there is no such object.
    async fn file_stat(&self, key: &str) -> FsResult<Option<Stat>> {
        let head = self.client.head_object(key).await;
        self.file_from_head(key, head)
    }

    /// A directory's stat: its marker's metadata when `key/` exists (HEAD), else implicit.
    async fn dir_stat(&self, key: &str) -> FsResult<Stat> {
        let marker = match self.client.head_object(&format!("{key}/")).await {
            Ok(info) => Some((MetaAttrs::parse(&info.user), info.last_modified)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(FsError::from_read(e)),
        };
        Ok(Stat::Dir(DirStat::probed(marker)))
    }

    fn file_from_head(
        &self,
        key: &str,
        head: Result<crate::cos::ObjectInfo, crate::cos::CosError>,
    ) -> FsResult<Option<Stat>> {
        match head {
            Ok(info) => Ok(Some(Stat::File(FileStat {
                size: info.size,
                etag: info.etag.clone(),
                last_modified: info.last_modified,
                meta: Some(MetaAttrs::parse(&info.user)),
            }))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => {
                let err = FsError::from_read(e);
                if matches!(err, FsError::SseKey) {
                    log::error!(
                        "{key} is SSE-C encrypted and the mount's key is missing or different (--sse-c-key-file)"
                    );
                }
                Err(err)
            }
        }
    }

    /// A fresh, complete view of a file's metadata (HEAD), for attribute changes.
    async fn head_fresh(&self, key: &str) -> FsResult<crate::cos::ObjectInfo> {
        self.client
            .head_object(key)
            .await
            .map_err(FsError::from_read)
    }

    fn root_attr(&self) -> Attr {
        attr_from(
            ROOT_INO,
            Kind::Dir,
            0,
            &self.root_attrs.lock(),
            implicit_dir_time(),
            &self.cfg.defaults,
        )
    }

    /// The attributes to report for `ino`, from `stat` or anything fresher: the size an open
    /// writer is at, else the cache (an own commit may have finished since `stat` was read).
    /// The writer's size is read first: a commit updates the cache before clearing it, so when
    /// it is gone the cache already has the new version.
    fn attr_of(&self, ino: Ino, stat: &Stat) -> Attr {
        let writer_size = self.inodes.lock().get(ino).and_then(|n| n.writer_size);
        let fresher = match writer_size {
            Some(_) => None,
            None => self
                .key_of(ino)
                .ok()
                .and_then(|k| match self.cache.get(&k) {
                    Cached::Found(s) if s.kind() == stat.kind() => Some(s),
                    _ => None,
                }),
        };
        let stat = fresher.as_ref().unwrap_or(stat);
        let mut a = match stat {
            Stat::File(f) => attr_from(
                ino,
                f.kind(),
                f.size,
                f.meta.as_ref().unwrap_or(&MetaAttrs::default()),
                f.last_modified,
                &self.cfg.defaults,
            ),
            Stat::Dir(d) => {
                let (meta, time) = d
                    .marker
                    .clone()
                    .unwrap_or_else(|| (MetaAttrs::default(), implicit_dir_time()));
                attr_from(ino, Kind::Dir, 0, &meta, time, &self.cfg.defaults)
            }
        };
        if let Some(size) = writer_size {
            a.size = size;
        }
        if let Some(node) = self.inodes.lock().get(ino) {
            let p = &node.pending;
            if let Some(m) = p.mode {
                a.perm = (m & 0o7777) as u16;
            }
            a.uid = p.uid.unwrap_or(a.uid);
            a.gid = p.gid.unwrap_or(a.gid);
            a.mtime = p.mtime.unwrap_or(a.mtime);
        }
        a
    }

    /// Attributes of an inode removed from the namespace but still open.
    fn detached_attr(&self, ino: Ino, kind: Kind) -> Attr {
        let node = self.inodes.lock().get(ino).cloned();
        let meta = node.as_ref().map(|n| n.pending.clone()).unwrap_or_default();
        let size = node.and_then(|n| n.writer_size).unwrap_or(0);
        attr_from(
            ino,
            kind,
            size,
            &meta,
            SystemTime::now(),
            &self.cfg.defaults,
        )
    }

    /// The stat of an inode that exists only locally (created, not committed yet).
    fn local_stat(&self, ino: Ino) -> Option<Stat> {
        let inodes = self.inodes.lock();
        let node = inodes.get(ino)?;
        if !node.local {
            return None;
        }
        Some(Stat::File(FileStat {
            size: node.writer_size.unwrap_or(0),
            etag: String::new(),
            last_modified: SystemTime::now(),
            meta: Some(node.pending.clone()),
        }))
    }

    // ---- lookups and attributes ----

    pub async fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        let key = self.child_key(parent, name)?;
        let local = self.inodes.lock().child(parent, name);
        if let Some(ino) = local
            && let Some(stat) = self.local_stat(ino)
        {
            self.inodes.lock().lookup(parent, name, Kind::File);
            return Ok(self.attr_of(ino, &stat));
        }
        let stat = self.resolve(&key).await?.ok_or(FsError::NotFound)?;
        let ino = self.inodes.lock().lookup(parent, name, stat.kind());
        Ok(self.attr_of(ino, &stat))
    }

    /// Registers an entry returned by readdirplus (one lookup reference) and gives its attributes.
    pub fn remember(&self, parent: Ino, entry: &DirEntry) -> Attr {
        let ino = self.inodes.lock().lookup(parent, &entry.name, entry.kind());
        self.attr_of(ino, &entry.stat)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.root_attr());
        }
        if let Some(stat) = self.local_stat(ino) {
            return Ok(self.attr_of(ino, &stat));
        }
        let key = self.key_of(ino)?;
        let expected = self.inodes.lock().get(ino).map(|n| n.kind);
        match self.resolve(&key).await? {
            Some(stat) if Some(stat.kind()) == expected => Ok(self.attr_of(ino, &stat)),
            Some(_) => Err(FsError::Stale),
            None => {
                // A file being rewritten is still there for us even if someone deleted it.
                let writer_size = self.inodes.lock().get(ino).and_then(|n| n.writer_size);
                match writer_size {
                    Some(_) => Ok(self.attr_of(
                        ino,
                        &Stat::File(FileStat {
                            size: 0,
                            etag: String::new(),
                            last_modified: SystemTime::now(),
                            meta: None,
                        }),
                    )),
                    None => Err(FsError::NotFound),
                }
            }
        }
    }

    /// Every open file handle with its inode.
    fn file_handles(&self) -> Vec<(Ino, SharedFile)> {
        self.handles
            .lock()
            .values()
            .filter_map(|h| match h {
                Handle::File(i, f) => Some((*i, f.clone())),
                Handle::Dir(_) => None,
            })
            .collect()
    }

    /// The open handles of one file (writers or not; lock them to look).
    fn handles_of(&self, ino: Ino) -> Vec<SharedFile> {
        self.file_handles()
            .into_iter()
            .filter(|(i, _)| *i == ino)
            .map(|(_, f)| f)
            .collect()
    }

    /// Where a change of attributes or size goes instead of straight to COS: the handle it
    /// was made through (ftruncate, fchmod), else a handle a program is still writing through
    /// (the change then rides along with its commit). Handles whose descriptors were all
    /// closed (`flushed`) are not targets: `settle` committed them already.
    async fn writer_target(&self, ino: Ino, fh: Option<u64>) -> Option<SharedFile> {
        if let Some(h) = self.handle_on(fh, ino)
            && h.lock().await.writer.is_some()
        {
            return Some(h);
        }
        for h in self.handles_of(ino) {
            let g = h.lock().await;
            if g.writer.is_some() && !g.flushed {
                drop(g);
                return Some(h);
            }
        }
        None
    }

    /// The handle `fh` if it is open on `ino`.
    fn handle_on(&self, fh: Option<u64>, ino: Ino) -> Option<SharedFile> {
        match self.handles.lock().get(&fh?) {
            Some(Handle::File(i, f)) if *i == ino => Some(f.clone()),
            _ => None,
        }
    }

    pub async fn setattr(&self, ino: Ino, fh: Option<u64>, change: SetAttr) -> FsResult<Attr> {
        let attrs = MetaAttrs {
            mode: change.mode,
            uid: change.uid,
            gid: change.gid,
            mtime: change.mtime,
        };
        let touches_meta = attrs != MetaAttrs::default();
        if change.size.is_some() || touches_meta {
            self.check_writable()?;
            if fh.is_none() {
                self.settle(ino).await?;
            }
        }
        if ino == ROOT_INO {
            if change.size.is_some() {
                return Err(FsError::IsDir);
            }
            self.root_attrs.lock().merge(&attrs);
            return Ok(self.root_attr());
        }
        let kind = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.kind)
            .ok_or(FsError::Stale)?;
        if let Some(size) = change.size {
            if kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            self.truncate(ino, fh, size, &attrs).await?;
        } else if touches_meta {
            self.change_attrs(ino, kind, fh, &attrs).await?;
        }
        if self.inodes.lock().get(ino).is_some_and(|n| n.unlinked) {
            // Removed while open: the handle's own view is all there is.
            return Ok(self.detached_attr(ino, kind));
        }
        self.getattr(ino).await
    }

    /// Applies attribute changes: through an open writer (they ride with its commit) or with a
    /// Copy of the object onto itself (no data moves).
    async fn change_attrs(
        &self,
        ino: Ino,
        kind: Kind,
        fh: Option<u64>,
        attrs: &MetaAttrs,
    ) -> FsResult<()> {
        let mut attrs = attrs.clone();
        if let Some(mode) = attrs.mode {
            attrs.mode = Some(mode_bits(kind, (mode & 0o7777) as u16));
        }
        let key = self.key_of(ino).unwrap_or_default();
        if kind != Kind::Dir {
            if let Some(t) = self.writer_target(ino, fh).await {
                let mut g = t.lock().await;
                if let Some(w) = g.writer.as_mut() {
                    w.set_attrs(&attrs);
                    if let Some(node) = self.inodes.lock().get_mut(ino) {
                        node.pending.merge(&attrs);
                    }
                    drop(g);
                    self.update_cached_meta(&key, &attrs);
                    return Ok(());
                }
            }
            let key = self.key_of(ino)?;
            let info = self.head_fresh(&key).await?;
            let mut meta = info.metadata();
            let mut merged = MetaAttrs::parse(&meta.user);
            merged.merge(&attrs);
            merged.apply(&mut meta.user);
            let out = self
                .client
                .copy_object(
                    CopyObject::new(key.clone(), key.clone())
                        .replace_metadata(meta.clone())
                        .source_if_match(info.etag.clone()),
                )
                .await
                .map_err(FsError::from_read)?;
            self.cache.insert(
                &key,
                Stat::File(FileStat {
                    size: info.size,
                    etag: out.etag,
                    last_modified: out.last_modified.unwrap_or_else(SystemTime::now),
                    meta: Some(merged),
                }),
            );
            return Ok(());
        }
        // A directory: its marker carries the attributes; an implicit one gets a marker.
        let marker_key = self.dir_prefix(&key);
        let (mut meta, etag) = match self.client.head_object(&marker_key).await {
            Ok(info) => (info.metadata(), Some(info.etag)),
            Err(e) if e.is_not_found() => (ObjectMetadata::default(), None),
            Err(e) => return Err(FsError::from_read(e)),
        };
        let mut merged = MetaAttrs::parse(&meta.user);
        merged.merge(&attrs);
        merged.apply(&mut meta.user);
        match etag {
            Some(etag) => {
                self.client
                    .copy_object(
                        CopyObject::new(marker_key.clone(), marker_key.clone())
                            .replace_metadata(meta)
                            .source_if_match(etag),
                    )
                    .await
                    .map_err(FsError::from_read)?;
            }
            None => {
                self.client
                    .put_object(PutObject::new(marker_key, Body::Empty).metadata(meta))
                    .await
                    .map_err(FsError::Cos)?;
            }
        }
        self.cache.insert(
            &key,
            Stat::Dir(DirStat::probed(Some((merged, SystemTime::now())))),
        );
        Ok(())
    }

    fn update_cached_meta(&self, key: &str, attrs: &MetaAttrs) {
        if let Cached::Found(Stat::File(mut f)) = self.cache.get(key) {
            let mut m = f.meta.unwrap_or_default();
            m.merge(attrs);
            f.meta = Some(m);
            self.cache.insert(key, Stat::File(f));
        }
    }

    async fn truncate(
        &self,
        ino: Ino,
        fh: Option<u64>,
        size: u64,
        attrs: &MetaAttrs,
    ) -> FsResult<()> {
        let handle = self.writer_target(ino, fh).await;
        let own = self.handle_on(fh, ino);
        if let Some(h) = handle {
            let mut g = h.lock().await;
            if own.as_ref().is_some_and(|o| Arc::ptr_eq(o, &h)) {
                // ftruncate(2): the program is using this descriptor.
                g.flushed = false;
            }
            let w = g.writer.as_mut().ok_or(FsError::BadHandle)?;
            w.truncate(size).await?;
            if *attrs != MetaAttrs::default() {
                w.set_attrs(attrs);
            }
            let sz = w.size();
            drop(g);
            if let Some(node) = self.inodes.lock().get_mut(ino) {
                node.writer_size = Some(sz);
            }
            return Ok(());
        }
        // No open writer (truncate(2) on a path): a short-lived handle commits at once.
        let key = self.key_of(ino)?;
        let base = self.base_for(&key).await?;
        let mut w = WriteHandle::new(
            self.client.clone(),
            self.write_config(),
            self.upload_slots.clone(),
            key.clone(),
            base,
            false,
            attrs.clone(),
        );
        w.truncate(size).await?;
        let committed = w.commit().await?;
        if let Some(c) = committed {
            self.after_commit(ino, &key, &c);
        }
        Ok(())
    }

    fn write_config(&self) -> WriteConfig {
        WriteConfig {
            part_size: self.cfg.part_size,
            cache_dir: self.cfg.cache_dir.clone(),
            tail_memory: self.tail_memory.clone(),
        }
    }

    /// The current object at `key` as a write base (HEAD, for its full metadata).
    async fn base_for(&self, key: &str) -> FsResult<Option<Base>> {
        match self.client.head_object(key).await {
            Ok(info) => Ok(Some(Base {
                version: Version {
                    key: key.to_string(),
                    etag: info.etag.clone(),
                    size: info.size,
                },
                metadata: info.metadata(),
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(FsError::from_read(e)),
        }
    }

    fn after_commit(&self, ino: Ino, key: &str, c: &write::Committed) {
        let meta = MetaAttrs::parse(&c.metadata.user);
        self.learn(
            key,
            Some(Stat::File(FileStat {
                size: c.size,
                etag: c.etag.clone(),
                last_modified: c.last_modified,
                meta: Some(meta),
            })),
        );
        if let Some(node) = self.inodes.lock().get_mut(ino) {
            node.local = false;
            node.writer_size = None;
            node.cached_etag = None;
            node.pending = MetaAttrs::default();
        }
    }

    pub async fn readlink(&self, ino: Ino) -> FsResult<String> {
        if let Some(t) = self
            .inodes
            .lock()
            .get(ino)
            .and_then(|n| n.symlink_target.clone())
        {
            return Ok(t);
        }
        let key = self.key_of(ino)?;
        let size = match self.resolve(&key).await? {
            Some(Stat::File(f)) => f.size,
            Some(Stat::Dir(_)) => return Err(FsError::Invalid("not a symlink")),
            None => return Err(FsError::NotFound),
        };
        if size > MAX_SYMLINK {
            return Err(FsError::Invalid("symlink target longer than PATH_MAX"));
        }
        let body = if size == 0 {
            Bytes::new()
        } else {
            self.client
                .get_object_bytes(GetObject::new(key.clone()))
                .await
                .map_err(FsError::from_read)?
                .1
        };
        let target = String::from_utf8(body.to_vec())
            .map_err(|_| FsError::Invalid("symlink target is not UTF-8"))?;
        if let Some(node) = self.inodes.lock().get_mut(ino) {
            node.symlink_target = Some(target.clone());
        }
        Ok(target)
    }

    // ---- namespace ----

    fn new_attrs(kind: Kind, perm: u32, uid: u32, gid: u32) -> MetaAttrs {
        MetaAttrs {
            mode: Some(mode_bits(kind, (perm & 0o7777) as u16)),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(SystemTime::now()),
        }
    }

    async fn ensure_absent(&self, parent: Ino, name: &str, key: &str) -> FsResult<()> {
        if let Some(ino) = self.inodes.lock().child(parent, name)
            && self.local_stat(ino).is_some()
        {
            return Err(FsError::Exists);
        }
        match self.resolve(key).await? {
            Some(_) => Err(FsError::Exists),
            None => Ok(()),
        }
    }

    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        self.ensure_absent(parent, name, &key).await?;
        let attrs = Self::new_attrs(Kind::Dir, mode, uid, gid);
        let mut meta = ObjectMetadata::default();
        attrs.apply(&mut meta.user);
        self.client
            .put_object(PutObject::new(self.dir_prefix(&key), Body::Empty).metadata(meta))
            .await
            .map_err(FsError::Cos)?;
        let stat = Stat::Dir(DirStat::probed(Some((attrs, SystemTime::now()))));
        self.learn(&key, Some(stat.clone()));
        // A directory made here is empty: its listing is known without asking.
        let prefix = self.dir_prefix(&key);
        let mut empty = DirHandle::new(0, prefix.clone());
        empty.done = true;
        self.listings.lock().store(&prefix, &empty, Instant::now());
        let ino = self.inodes.lock().lookup(parent, name, Kind::Dir);
        Ok(self.attr_of(ino, &stat))
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        self.ensure_absent(parent, name, &key).await?;
        let attrs = Self::new_attrs(Kind::Symlink, 0o777, uid, gid);
        let mut meta = ObjectMetadata::default();
        attrs.apply(&mut meta.user);
        let out = self
            .client
            .put_object(
                PutObject::new(key.clone(), Body::Bytes(Bytes::from(target.to_string())))
                    .metadata(meta),
            )
            .await
            .map_err(FsError::Cos)?;
        let stat = Stat::File(FileStat {
            size: target.len() as u64,
            etag: out.etag,
            last_modified: SystemTime::now(),
            meta: Some(attrs),
        });
        self.learn(&key, Some(stat.clone()));
        let ino = self.inodes.lock().lookup(parent, name, Kind::Symlink);
        if let Some(node) = self.inodes.lock().get_mut(ino) {
            node.symlink_target = Some(target.to_string());
        }
        Ok(self.attr_of(ino, &stat))
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        let child = self.inodes.lock().child(parent, name);
        if let Some(ino) = child {
            self.settle(ino).await?;
        }
        if let Some(ino) = child
            && self.local_stat(ino).is_some()
        {
            // Never stored: forgetting it is enough; open handles will not commit it.
            self.inodes.lock().detach(parent, name);
            return Ok(());
        }
        match self.resolve(&key).await? {
            None => return Err(FsError::NotFound),
            Some(Stat::Dir(_)) => return Err(FsError::IsDir),
            Some(Stat::File(_)) => {}
        }
        self.client
            .delete_object(&key)
            .await
            .map_err(FsError::Cos)?;
        self.learn(&key, None);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    /// Whether directory `key` has anything in it besides its own marker.
    async fn dir_has_children(&self, key: &str, ino: Option<Ino>) -> FsResult<bool> {
        if let Some(ino) = ino {
            let kids = self.inodes.lock().children_of(ino);
            if kids.into_iter().any(|k| self.local_stat(k).is_some()) {
                return Ok(true);
            }
        }
        let prefix = self.dir_prefix(key);
        let page = self
            .client
            .list_objects(ListObjects::new(prefix.clone()).max_keys(2))
            .await
            .map_err(FsError::Cos)?;
        Ok(!page.common_prefixes.is_empty() || page.objects.iter().any(|o| o.key != prefix))
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        match self.resolve(&key).await? {
            None => return Err(FsError::NotFound),
            Some(Stat::File(_)) => return Err(FsError::NotDir),
            Some(Stat::Dir(_)) => {}
        }
        let ino = self.inodes.lock().child(parent, name);
        if self.dir_has_children(&key, ino).await? {
            return Err(FsError::NotEmpty);
        }
        self.client
            .delete_object(&self.dir_prefix(&key))
            .await
            .map_err(FsError::Cos)?;
        self.unlearn_tree(&key);
        self.learn(&key, None);
        self.inodes.lock().detach(parent, name);
        Ok(())
    }

    /// Commits every dirty write handle whose file is `ino` or lies under it.
    async fn commit_writers_under(&self, ino: Ino) -> FsResult<()> {
        let handles = self.file_handles();
        for (target, h) in handles {
            if self.is_under(target, ino) {
                // Locking the handle waits for a release committing it right now.
                self.commit_locked(&h, false).await?;
            }
        }
        Ok(())
    }

    /// Server-side copy of one object, multipart above 5 GiB (Upload Part - Copy).
    async fn copy_one(&self, src: &str, dst: &str, size: u64) -> FsResult<()> {
        write::server_side_copy(
            &*self.client,
            src,
            dst,
            size,
            None,
            self.cfg.max_concurrency,
        )
        .await
        .map(|_| ())
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        self.check_writable()?;
        let src = self.child_key(parent, name)?;
        let dst = self.child_key(new_parent, new_name)?;
        if src == dst {
            return Ok(());
        }
        let src_ino = self.inodes.lock().child(parent, name);
        let dst_ino_now = self.inodes.lock().child(new_parent, new_name);
        for i in src_ino.into_iter().chain(dst_ino_now) {
            self.settle(i).await?;
        }
        let src_local = src_ino.is_some_and(|i| self.local_stat(i).is_some());
        let src_stat = if src_local {
            None
        } else {
            Some(self.resolve(&src).await?.ok_or(FsError::NotFound)?)
        };
        let src_kind = src_stat.as_ref().map(Stat::kind).unwrap_or(Kind::File);
        let dst_ino = self.inodes.lock().child(new_parent, new_name);
        let dst_stat = if dst_ino.is_some_and(|i| self.local_stat(i).is_some()) {
            self.local_stat(dst_ino.expect("checked"))
        } else {
            self.resolve(&dst).await?
        };
        if let Some(d) = &dst_stat {
            if noreplace {
                return Err(FsError::Exists);
            }
            match (src_kind == Kind::Dir, d.kind() == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) => {
                    if self.dir_has_children(&dst, dst_ino).await? {
                        return Err(FsError::NotEmpty);
                    }
                }
                (false, false) => {}
            }
        }
        if src_kind == Kind::Dir && dst.starts_with(&format!("{src}/")) {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        if src_local {
            // Not stored yet: only the name changes; the first commit uses the new one. What
            // the new name held is replaced now, as rename(2) says, not at that commit.
            let ino = src_ino.expect("local implies an inode");
            if matches!(dst_stat, Some(Stat::File(_)))
                && dst_ino.is_none_or(|i| self.local_stat(i).is_none())
            {
                self.client
                    .delete_object(&dst)
                    .await
                    .map_err(FsError::Cos)?;
            }
            self.inodes.lock().rename(ino, new_parent, new_name);
            self.unlearn_tree(&dst);
            return Ok(());
        }
        if let Some(ino) = src_ino {
            self.commit_writers_under(ino).await?;
        }
        match src_stat.expect("not local") {
            Stat::File(_) => {
                let info = self.head_fresh(&src).await?;
                self.copy_one(&src, &dst, info.size).await?;
                self.client
                    .delete_object(&src)
                    .await
                    .map_err(FsError::Cos)?;
                self.learn(&src, None);
                self.unlearn_tree(&dst);
            }
            Stat::Dir(_) => {
                if dst_stat.is_some() {
                    self.client
                        .delete_object(&self.dir_prefix(&dst))
                        .await
                        .map_err(FsError::Cos)?;
                }
                self.rename_tree(&src, &dst).await?;
                self.unlearn_tree(&src);
                self.unlearn_tree(&dst);
                self.learn(&src, None);
            }
        }
        let moved = self.inodes.lock().child(parent, name);
        if let Some(ino) = moved {
            self.inodes.lock().rename(ino, new_parent, new_name);
            self.follow_rename(ino).await;
        } else {
            self.inodes.lock().detach(new_parent, new_name);
        }
        Ok(())
    }

    /// Commits what handles that were closed by their program but not released yet still
    /// hold (a truncation waiting for its release, `: > f`; a change of the path routed to
    /// such a handle; see `WriteHandle::worth_committing_at_flush`), and waits for releases
    /// committing now, so that an operation on the path that follows (open, truncate, chmod,
    /// unlink, rename) comes after them, as it did for the program: the mount's own changes
    /// are seen in order.
    async fn settle(&self, ino: Ino) -> FsResult<()> {
        let (open, releasing): (Vec<SharedFile>, Vec<SharedFile>) = {
            let handles = self.handles.lock();
            let releasing = self.releasing.lock();
            (
                handles
                    .values()
                    .filter_map(|h| match h {
                        Handle::File(i, f) if *i == ino => Some(f.clone()),
                        _ => None,
                    })
                    .collect(),
                releasing
                    .iter()
                    .filter(|(i, _)| *i == ino)
                    .map(|(_, h)| h.clone())
                    .collect(),
            )
        };
        for h in releasing {
            // Waits for the release's commit.
            drop(h.lock().await);
        }
        for h in open {
            let pending = {
                let g = h.lock().await;
                g.flushed && g.writer.as_ref().is_some_and(WriteHandle::is_dirty)
            };
            if pending {
                self.commit_locked(&h, false).await?;
            }
        }
        Ok(())
    }

    /// Points the open handles of `moved` (a renamed file, or anything under a renamed
    /// directory) at their new keys: readers read, and writers commit and fetch, there. The
    /// copy's ETag may differ from the original's (multipart copies), so it is asked for.
    async fn follow_rename(&self, moved: Ino) {
        let handles = self.file_handles();
        for (hino, h) in handles {
            if !self.is_under(hino, moved) {
                continue;
            }
            let Ok(key) = self.key_of(hino) else {
                continue;
            };
            let etag = self.client.head_object(&key).await.ok().map(|i| i.etag);
            let mut g = h.lock().await;
            if let Some(v) = g.version.as_mut() {
                v.key = key.clone();
                if let Some(e) = &etag {
                    v.etag = e.clone();
                }
            }
            g.reader = None;
            if let Some(w) = g.writer.as_mut() {
                w.rebase(key, etag);
            }
        }
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
                Some(n) if cur != ROOT_INO => cur = n.parent,
                _ => return false,
            }
        }
        false
    }

    /// Copies every key under `src/` to `dst/` (in parallel), then deletes the old keys: an
    /// interruption leaves every object reachable under the old name, the new one, or both.
    async fn rename_tree(&self, src: &str, dst: &str) -> FsResult<()> {
        let src_prefix = self.dir_prefix(src);
        let dst_prefix = self.dir_prefix(dst);
        let pages: Vec<_> = list_all(self.client.clone(), ListObjects::new(src_prefix.clone()))
            .try_collect()
            .await
            .map_err(FsError::Cos)?;
        let objects: Vec<(String, u64)> = pages
            .into_iter()
            .flat_map(|p| p.objects)
            .map(|o| (o.key, o.size))
            .collect();
        futures::stream::iter(objects.iter().cloned())
            .map(|(key, size)| {
                let target = format!("{dst_prefix}{}", &key[src_prefix.len()..]);
                async move { self.copy_one(&key, &target, size).await }
            })
            .buffer_unordered(RENAME_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let keys: Vec<String> = objects.into_iter().map(|(k, _)| k).collect();
        let failed = self
            .client
            .delete_objects(&keys)
            .await
            .map_err(FsError::Cos)?;
        if let Some((key, why)) = failed.first() {
            log::error!("rename: could not delete {key} after copying it: {why}");
            return Err(FsError::Local(format!("could not delete {key}")));
        }
        Ok(())
    }

    pub fn link(&self) -> FsResult<Attr> {
        Err(FsError::NotPermitted("hard links are not supported on COS"))
    }

    // ---- files ----

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, h);
        fh
    }

    fn file_handle(&self, fh: u64) -> FsResult<Arc<tokio::sync::Mutex<FileHandle>>> {
        match self.handles.lock().get(&fh) {
            Some(Handle::File(_, f)) => Ok(f.clone()),
            _ => Err(FsError::BadHandle),
        }
    }

    /// Opens a file. Returns the handle and whether the kernel may keep its cached pages.
    pub async fn open(&self, ino: Ino, mode: OpenMode) -> FsResult<(u64, bool)> {
        if mode.write || mode.truncate {
            self.check_writable()?;
        }
        let kind = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.kind)
            .ok_or(FsError::Stale)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let key = self.key_of(ino)?;
        self.settle(ino).await?;
        let local = self.local_stat(ino).is_some();
        let stat = if local {
            None
        } else {
            match self.resolve(&key).await? {
                Some(Stat::File(f)) => Some(f),
                Some(Stat::Dir(_)) => return Err(FsError::IsDir),
                None => return Err(FsError::NotFound),
            }
        };
        let version = stat.as_ref().map(|f| Version {
            key: key.clone(),
            etag: f.etag.clone(),
            size: f.size,
        });
        let writer = if mode.write || mode.truncate {
            let base = if local {
                None
            } else {
                self.base_for(&key).await?
            };
            Some(WriteHandle::new(
                self.client.clone(),
                self.write_config(),
                self.upload_slots.clone(),
                key.clone(),
                base,
                mode.truncate,
                MetaAttrs::default(),
            ))
        } else {
            None
        };
        let keep_cache = {
            let mut inodes = self.inodes.lock();
            inodes.open_handle(ino);
            let node = inodes.get_mut(ino).expect("just opened");
            let etag = version.as_ref().map(|v| v.etag.clone());
            let keep = writer.is_none() && etag.is_some() && node.cached_etag == etag;
            node.cached_etag = if writer.is_none() { etag } else { None };
            if let Some(w) = &writer {
                node.writers += 1;
                if mode.truncate {
                    node.writer_size = Some(w.size());
                }
            }
            keep
        };
        let fh = self.new_handle(Handle::File(
            ino,
            Arc::new(tokio::sync::Mutex::new(FileHandle {
                ino,
                opener: mode.caller,
                flushed: false,
                version,
                reader: None,
                writer,
            })),
        ));
        Ok((fh, keep_cache))
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        open: OpenMode,
        uid: u32,
        gid: u32,
    ) -> FsResult<(Attr, u64)> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        if self.ensure_absent(parent, name, &key).await.is_err() {
            if open.exclusive {
                return Err(FsError::Exists);
            }
            let attr = self.lookup(parent, name).await?;
            let (fh, _) = self
                .open(
                    attr.ino,
                    OpenMode {
                        write: true,
                        ..open
                    },
                )
                .await?;
            return Ok((self.getattr(attr.ino).await?, fh));
        }
        let attrs = Self::new_attrs(Kind::File, mode, uid, gid);
        let ino = {
            let mut inodes = self.inodes.lock();
            let ino = inodes.lookup(parent, name, Kind::File);
            let node = inodes.get_mut(ino).expect("just created");
            node.local = true;
            node.unlinked = false;
            node.pending = attrs.clone();
            node.writer_size = Some(0);
            node.writers += 1;
            inodes.open_handle(ino);
            ino
        };
        self.cache.remove(&key);
        let writer = WriteHandle::new(
            self.client.clone(),
            self.write_config(),
            self.upload_slots.clone(),
            key,
            None,
            true,
            attrs,
        );
        let fh = self.new_handle(Handle::File(
            ino,
            Arc::new(tokio::sync::Mutex::new(FileHandle {
                ino,
                opener: open.caller,
                flushed: false,
                version: None,
                reader: None,
                writer: Some(writer),
            })),
        ));
        let stat = self.local_stat(ino).expect("local");
        Ok((self.attr_of(ino, &stat), fh))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        log::trace!("read fh {fh}: {size} bytes at {offset}");
        let h = self.file_handle(fh)?;
        let mut g = h.lock().await;
        if let Some(w) = g.writer.as_mut()
            && w.has_local_content()
        {
            return w.read(offset, size as u64).await;
        }
        if g.reader.is_none() {
            let Some(version) = g.version.clone() else {
                return Ok(Bytes::new());
            };
            g.reader = Some(Prefetcher::new(
                self.client.clone(),
                version,
                self.cfg.prefetch.clone(),
                self.prefetch_memory.clone(),
            ));
        }
        let result = g
            .reader
            .as_mut()
            .expect("set above")
            .read(offset, size as u64)
            .await;
        if let Err(FsError::SseKey) = &result {
            log::error!(
                "cannot read {}: it is SSE-C encrypted and the mount's key is missing or different",
                g.version.as_ref().map(|v| v.key.as_str()).unwrap_or("?")
            );
        }
        if let Err(FsError::Stale) = &result {
            log::warn!(
                "{} changed while open; reads of this handle fail with ESTALE",
                g.version.as_ref().map(|v| v.key.as_str()).unwrap_or("?")
            );
        }
        result
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Bytes) -> FsResult<u32> {
        let h = self.file_handle(fh)?;
        let mut g = h.lock().await;
        let ino = g.ino;
        g.flushed = false;
        let w = g.writer.as_mut().ok_or(FsError::BadHandle)?;
        let len = data.len() as u32;
        w.write(offset, data).await?;
        let size = w.size();
        drop(g);
        if let Some(node) = self.inodes.lock().get_mut(ino) {
            node.writer_size = Some(size);
        }
        Ok(len)
    }

    /// Commits a handle's pending writes; its error is the caller's (flush/fsync → EIO).
    async fn commit_handle(&self, fh: u64) -> FsResult<()> {
        self.commit_handle_when(fh, false).await
    }

    async fn commit_handle_when(&self, fh: u64, at_flush: bool) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        self.commit_locked(&h, at_flush).await
    }

    async fn commit_locked(&self, h: &SharedFile, at_flush: bool) -> FsResult<()> {
        let mut g = h.lock().await;
        let ino = g.ino;
        let Some(w) = g.writer.as_mut() else {
            return Ok(());
        };
        if at_flush && !w.worth_committing_at_flush() {
            return Ok(());
        }
        let unlinked = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.unlinked)
            .unwrap_or(true);
        if unlinked {
            w.discard().await;
            return Ok(());
        }
        let key = self.key_of(ino)?;
        if w.key() != key {
            w.set_key(key.clone());
        }
        if let Some(c) = w.commit().await? {
            self.after_commit(ino, &key, &c);
        }
        Ok(())
    }

    /// A close of one descriptor of the handle (from thread `caller`). It commits only when
    /// the closing process is the one that opened the file: a child that inherited the
    /// descriptor (fork, then exec or exit) closes its copy while the parent still writes, and
    /// committing then would publish a partial file. Such closes leave the commit to the
    /// opener's close, or to release.
    pub async fn flush(&self, fh: u64, caller: Option<u32>) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let opener = h.lock().await.opener;
        // The same thread: the same process, without asking /proc (the common case).
        if opener != caller
            && let (Some(opener), Some(closer)) =
                (opener.and_then(process_of), caller.and_then(process_of))
            && opener != closer
        {
            // Not the program's own close: the handle is still in use (not `flushed`).
            log::debug!(
                "flush of handle {fh} by process {closer}, opened by {opener}: not committing"
            );
            return Ok(());
        }
        h.lock().await.flushed = true;
        self.commit_handle_when(fh, true).await
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        self.commit_handle(fh).await
    }

    /// Closes a handle, committing what is still dirty (an error here can only be logged).
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        // Out of the table first, so no other operation routes a change to it any more; in
        // `releasing` until done, so `settle` can wait for its commit.
        let (_, h) = {
            // Both locks at once: the handle is always in one of the two lists.
            let mut handles = self.handles.lock();
            let mut releasing = self.releasing.lock();
            match handles.remove(&fh) {
                Some(Handle::File(ino, h)) => {
                    releasing.push((ino, h.clone()));
                    (ino, h)
                }
                _ => return Ok(()),
            }
        };
        let result = self.commit_locked(&h, false).await;
        {
            let mut g = h.lock().await;
            if let Some(w) = g.writer.as_mut() {
                w.discard().await;
            }
            let ino = g.ino;
            let mut inodes = self.inodes.lock();
            if let Some(node) = inodes.get_mut(ino)
                && g.writer.is_some()
            {
                node.writers = node.writers.saturating_sub(1);
                if node.writers == 0 {
                    node.writer_size = None;
                    node.pending = MetaAttrs::default();
                }
                if node.local && node.writers == 0 {
                    // A failed first commit: the file never existed in COS.
                    node.local = false;
                    node.unlinked = true;
                }
            }
            inodes.close_handle(ino);
        }
        self.releasing.lock().retain(|(_, x)| !Arc::ptr_eq(x, &h));
        if let Err(e) = &result {
            log::error!("closing a file: its last commit failed: {e}");
        }
        result
    }

    // ---- directories ----

    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let kind = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.kind)
            .ok_or(FsError::Stale)?;
        if kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let key = self.key_of(ino)?;
        let prefix = if ino == ROOT_INO {
            self.cfg.prefix.clone()
        } else {
            self.dir_prefix(&key)
        };
        self.inodes.lock().open_handle(ino);
        Ok(
            self.new_handle(Handle::Dir(Arc::new(tokio::sync::Mutex::new(
                DirHandle::new(ino, prefix),
            )))),
        )
    }

    /// Entries from `offset` on (at most `max`), fetching listing pages as needed.
    pub async fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<Listed>> {
        let h = match self.handles.lock().get(&fh) {
            Some(Handle::Dir(d)) => d.clone(),
            _ => return Err(FsError::BadHandle),
        };
        let mut d = h.lock().await;
        let mut out = Vec::new();
        let ino = d.ino;
        if offset < 1 {
            out.push(Listed {
                next_offset: 1,
                name: ".".into(),
                kind: Kind::Dir,
                entry: None,
                ino,
            });
        }
        if offset < 2 {
            let parent = self
                .inodes
                .lock()
                .get(ino)
                .map(|n| n.parent)
                .unwrap_or(ROOT_INO);
            out.push(Listed {
                next_offset: 2,
                name: "..".into(),
                kind: Kind::Dir,
                entry: None,
                ino: parent,
            });
        }
        let start = offset.saturating_sub(FIRST_ENTRY_OFFSET - 1) as usize;
        if d.marker.is_none() && d.entries.is_empty() && !d.done {
            let cached = self
                .listings
                .lock()
                .fresh(&d.prefix, self.cfg.metadata_ttl)
                .cloned();
            if let Some(mut listing) = cached {
                listing.ino = ino;
                listing.local_added = false;
                *d = listing;
                self.complete_entries(&mut d, 0).await;
            }
        }
        while !d.done && d.entries.len() < start + max {
            let marker = d.marker.clone().unwrap_or_default();
            let (_, asked, task) = match d.next_page.take_for(&marker) {
                Some(t) => t,
                None => self.list_page(&d.prefix, marker),
            };
            let page = task
                .await
                .map_err(|e| FsError::Local(format!("listing task failed: {e}")))?
                .map_err(FsError::Cos)?;
            d.started.get_or_insert(asked);
            let first_new = d.entries.len();
            for (key, stat) in d.absorb(page, &self.skips) {
                self.cache.insert_observed(&key, stat, asked);
            }
            // The next page is asked for now, while this one's entries are completed and
            // read by the kernel: a large directory costs one LIST round trip, not one a page.
            if !d.done
                && let Some(next) = d.marker.clone()
            {
                let t = self.list_page(&d.prefix, next);
                d.next_page.start(t);
            }
            self.complete_entries(&mut d, first_new).await;
            if d.done
                && let Some(asked) = d.started
            {
                self.listings.lock().store(&d.prefix, &d, asked);
            }
        }
        if d.done && !d.local_added {
            d.local_added = true;
            let kids = self.inodes.lock().children_of(ino);
            for k in kids {
                if let Some(stat) = self.local_stat(k) {
                    let name = self.inodes.lock().get(k).map(|n| n.name.clone());
                    if let Some(name) = name {
                        d.add_local(name, stat);
                    }
                }
            }
        }
        let prefix = d.prefix.clone();
        for (i, e) in d.entries.iter_mut().enumerate().skip(start).take(max) {
            // A page may be older than an own write that finished since: serve the freshest
            // view of each entry (same kind only; offsets and names never change).
            if let Cached::Found(s) = self.cache.get(&format!("{prefix}{}", e.name))
                && s.kind() == e.kind()
            {
                e.stat = s;
            }
            let known = self.inodes.lock().child(ino, &e.name);
            out.push(Listed {
                next_offset: i as u64 + FIRST_ENTRY_OFFSET,
                name: e.name.clone(),
                kind: e.kind(),
                entry: Some(e.clone()),
                ino: known.unwrap_or(u64::MAX - i as u64),
            });
        }
        Ok(out)
    }

    /// Starts fetching the listing page of `prefix` that follows `marker`.
    fn list_page(&self, prefix: &str, marker: String) -> dir::NextPageTask {
        let client = self.client.clone();
        let list = ListObjects::new(prefix.to_string())
            .delimiter("/")
            .marker(marker.clone());
        let task = tokio::spawn(async move { client.list_objects(list).await });
        (marker, Instant::now(), task)
    }

    /// Gives entries `from..` of a listing their full attributes: what the cache knows for the
    /// same object version, else a HEAD per entry (many in parallel), since COS listings carry
    /// no user metadata (mode, owner, symlink). Skipped with `fast_listing`.
    async fn complete_entries(&self, d: &mut DirHandle, from: usize) {
        let asked = Instant::now();
        let mut need = Vec::new();
        for (i, e) in d.entries.iter_mut().enumerate().skip(from) {
            let key = format!("{}{}", d.prefix, e.name);
            if let Cached::Found(s) = self.cache.get(&key) {
                e.stat = s;
            }
            let incomplete = match &e.stat {
                Stat::File(f) => f.meta.is_none(),
                Stat::Dir(dir) => !dir.probed,
            };
            if incomplete && !self.cfg.fast_listing {
                need.push((i, key, matches!(e.stat, Stat::Dir(_))));
            }
        }
        let found: Vec<(usize, String, Stat)> = futures::stream::iter(need)
            .map(|(i, key, is_dir)| async move {
                let stat = if is_dir {
                    self.dir_stat(&key).await.ok()
                } else {
                    self.file_stat(&key).await.ok().flatten()
                };
                stat.map(|s| (i, key, s))
            })
            .buffer_unordered(LISTING_HEAD_CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        for (i, key, stat) in found {
            self.cache.insert_observed(&key, stat.clone(), asked);
            // A newer view in the cache (an own write meanwhile) wins over this answer.
            d.entries[i].stat = match self.cache.get(&key) {
                Cached::Found(s) => s,
                _ => stat,
            };
        }
    }

    pub fn releasedir(&self, fh: u64) {
        let removed = self.handles.lock().remove(&fh);
        if let Some(Handle::Dir(d)) = removed {
            let ino = d.try_lock().map(|g| g.ino).ok();
            if let Some(ino) = ino {
                self.inodes.lock().close_handle(ino);
            }
        }
    }

    pub fn statfs(&self) -> StatFs {
        StatFs {
            blocks: 1 << 40,
            bfree: 1 << 40,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: 4096,
            namelen: dir::NAME_MAX as u32,
        }
    }

    /// At unmount: commits every dirty handle still open (or aborts its upload).
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
    }
}
