//! What a name is: resolving keys to files, directories or nothing (HEAD and LIST in parallel,
//! through the metadata cache and, when enabled, cached listings), the attributes `stat` shows
//! (with what open files and this mount's own changes add), lookups and symlink targets.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::Filesystem;
use super::attrs::{Attr, Ino, Kind, MetaAttrs, ROOT_INO, attr_from};
use super::dir::{DirEntry, DirHandle, implicit_dir_time};
use super::error::{FsError, FsResult};
use super::meta_cache::{Cached, DirStat, FileStat, Stat};
use super::open_file::View;
use crate::cos::{GetObject, ListObjects};

/// Directories of fewer entries are listed again rather than asked about name by name (at
/// most this many / 1000 pages per refresh; only with `--listing-ttl`).
const SMALL_LISTING: usize = 10_000;
/// Longest symlink target read back (PATH_MAX).
const MAX_SYMLINK: u64 = 4096;

/// What a cached listing says of a name.
#[derive(Debug, PartialEq, Eq)]
enum InListing {
    /// No fresh listing of the parent (or listings are not reused).
    Unknown,
    /// A fresh listing does not have it.
    Absent,
    Known(Stat),
    /// A file whose metadata the listing does not carry.
    File,
    /// A directory whose marker was not looked at.
    Dir,
}

impl Filesystem {
    /// What the parent's fresh cached listing says of `key` (only with `--listing-ttl`).
    fn listed(&self, key: &str) -> InListing {
        let (parent, name) = Self::split_key(key);
        self.reused_listing(&parent, |d| match d.get(&name) {
            None => InListing::Absent,
            Some(e) => match &e.stat {
                Stat::File(f) if f.meta.is_some() => InListing::Known(e.stat.clone()),
                Stat::Dir(dir) if dir.probed => InListing::Known(e.stat.clone()),
                Stat::File(_) => InListing::File,
                Stat::Dir(_) => InListing::Dir,
            },
        })
        .unwrap_or(InListing::Unknown)
    }

    /// When listings are reused (`--listing-ttl`) and the parent of `key` was listed before and
    /// is not large, lists it again (a few pages) instead of asking about one name (two
    /// requests): a directory being filled with new files then costs one listing per listing
    /// TTL, not a HEAD and a LIST per file. One refresh per directory at a time; others ask
    /// about their name.
    async fn refresh_small_listing(&self, key: &str) -> bool {
        if self.cfg.listing_ttl.is_zero() {
            return false;
        }
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

    /// What `key` is: a file, a directory, or nothing. HEAD `key`, HEAD `key/` and LIST `key/`
    /// run in parallel (design.md §2); a directory wins over a file of the same name.
    pub(super) async fn resolve(&self, key: &str) -> FsResult<Option<Stat>> {
        match self.cache.get(key) {
            Cached::Found(s) => return Ok(Some(s)),
            Cached::Missing => return Ok(None),
            Cached::Miss => {}
        }
        if let Some(f) = self.ahead.wait(key).await {
            // Fetched ahead (`ahead.rs`): that GET counts as a HEAD made when it was sent.
            self.cache.insert_observed(key, f.stat.clone(), f.asked);
            if let Cached::Found(s) = self.cache.get(key) {
                return Ok(Some(s));
            }
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

    /// Whether `key` is known not to exist: the cache says so, or a lookup found it missing
    /// moments ago (the lookup the kernel makes right before a create-type call; see
    /// `MetaCache::missing_within`). Otherwise COS is asked.
    pub(super) async fn absent(&self, key: &str) -> FsResult<bool> {
        if self.cache.missing_within(key, CREATE_AFTER_LOOKUP) {
            return Ok(true);
        }
        Ok(self.resolve(key).await?.is_none())
    }

    /// HEAD `key`, HEAD its marker `key/` and LIST `key/` at once: one round trip whatever
    /// the name turns out to be (a directory's marker carries its mode, owner and times, so
    /// asking for it only after the LIST showed a directory would make every directory lookup
    /// two). A name last known as a file is revalidated without the marker's HEAD; should it
    /// have become a directory, the marker is asked for after all.
    async fn resolve_uncached(&self, key: &str) -> FsResult<Option<Stat>> {
        let prefix = format!("{key}/");
        let was_file = self.cache.was_file(key);
        let (head, marker, list) = tokio::join!(
            self.client.head_object(key),
            async {
                if was_file {
                    None
                } else {
                    Some(self.marker_of(key).await)
                }
            },
            self.client
                .list_objects(ListObjects::new(prefix.clone()).max_keys(1))
        );
        let list = list.map_err(FsError::Cos)?;
        let listed = !list.objects.is_empty() || !list.common_prefixes.is_empty();
        match marker {
            // Only with the LIST's word for it: SeaweedFS answers a HEAD of `name/` for a
            // directory its filer keeps after the last object under it is gone.
            Some(Ok(Some(m))) if listed => return Ok(Some(Stat::Dir(DirStat::probed(Some(m))))),
            Some(Ok(None)) if listed => return Ok(Some(Stat::Dir(DirStat::probed(None)))),
            Some(Err(e)) if listed => return Err(e),
            None if listed => {
                if list.objects.first().is_some_and(|o| o.key == prefix) {
                    return Ok(Some(self.dir_stat(key).await?));
                }
                return Ok(Some(Stat::Dir(DirStat::probed(None))));
            }
            _ => {}
        }
        self.file_from_head(key, head)
    }

    /// A file's full stat (HEAD); `None` when there is no such object.
    pub(super) async fn file_stat(&self, key: &str) -> FsResult<Option<Stat>> {
        let head = self.client.head_object(key).await;
        if let (Ok(info), Some(c)) = (&head, &self.cfg.data_cache) {
            c.remember_attrs(key, &info.etag, info.last_modified, info.date, &info.user);
        }
        self.file_from_head(key, head)
    }

    /// A directory's stat: its marker's metadata when `key/` exists (HEAD), else implicit.
    pub(super) async fn dir_stat(&self, key: &str) -> FsResult<Stat> {
        Ok(Stat::Dir(DirStat::probed(self.marker_of(key).await?)))
    }

    /// The metadata and time of directory `key`'s marker (HEAD `key/`); `None` without one.
    async fn marker_of(&self, key: &str) -> FsResult<Option<(MetaAttrs, SystemTime)>> {
        match self.client.head_object(&format!("{key}/")).await {
            Ok(info) => Ok(Some((MetaAttrs::parse(&info.user), info.last_modified))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(FsError::from_read(e)),
        }
    }

    pub(super) fn file_from_head(
        &self,
        key: &str,
        head: Result<crate::cos::ObjectInfo, crate::cos::CosError>,
    ) -> FsResult<Option<Stat>> {
        match head {
            Ok(info) => Ok(Some(stat_of(&info))),
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
    pub(super) async fn head_fresh(&self, key: &str) -> FsResult<crate::cos::ObjectInfo> {
        self.client
            .head_object(key)
            .await
            .map_err(FsError::from_read)
    }

    pub(super) fn root_attr(&self) -> Attr {
        let root_key = self.key_of_path("");
        let mut a = attr_from(
            ROOT_INO,
            Kind::Dir,
            0,
            &self.root_attrs.lock(),
            implicit_dir_time(),
            &self.cfg.defaults,
        );
        if let Some(t) = self.dir_changed_at(&root_key) {
            a.mtime = a.mtime.max(t);
            a.ctime = a.ctime.max(t);
        }
        a
    }

    /// The open-file view of `ino`, when it has open descriptors.
    pub(super) fn view_of(&self, ino: Ino) -> Option<View> {
        self.files.lock().get(&ino).map(|f| f.view())
    }

    /// The attributes to report for `ino`, from `stat` or anything fresher: the size an open
    /// writer is at, else the cache (an own commit may have finished since `stat` was read).
    /// The writer's size is read first: a commit updates the cache before clearing it, so when
    /// it is gone the cache already has the new version.
    pub(super) fn attr_of(&self, ino: Ino, stat: &Stat) -> Attr {
        let view = self.view_of(ino);
        let writer_size = view.as_ref().and_then(|v| v.size);
        let key = self.key_of(ino).ok();
        let fresher = match writer_size {
            Some(_) => None,
            None => key.as_ref().and_then(|k| match self.cache.get(k) {
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
                let mut a = attr_from(ino, Kind::Dir, 0, &meta, time, &self.cfg.defaults);
                if let Some(t) = key.as_deref().and_then(|k| self.dir_changed_at(k)) {
                    a.mtime = a.mtime.max(t);
                    a.ctime = a.ctime.max(t);
                }
                a
            }
        };
        if let Some(v) = view {
            overlay(&mut a, &v);
        }
        a
    }

    /// Attributes of an inode removed from the namespace but still open.
    pub(super) fn detached_attr(&self, ino: Ino, kind: Kind) -> Attr {
        let view = self.view_of(ino).unwrap_or_default();
        let now = SystemTime::now();
        let mut a = attr_from(ino, kind, 0, &MetaAttrs::default(), now, &self.cfg.defaults);
        overlay(&mut a, &view);
        a.nlink = 0;
        a
    }

    /// The stat of an inode that exists only locally (created, not committed yet).
    pub(super) fn local_stat(&self, ino: Ino) -> Option<Stat> {
        let view = self.view_of(ino)?;
        if !view.local {
            return None;
        }
        Some(Stat::File(FileStat {
            size: view.size.unwrap_or(0),
            etag: String::new(),
            last_modified: SystemTime::now(),
            meta: Some(view.pending),
        }))
    }

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
        let (kind, unlinked) = self.kind_and_removal(ino)?;
        if unlinked {
            // Removed while open: the open file is all there is.
            return Ok(self.detached_attr(ino, kind));
        }
        if let Some(stat) = self.local_stat(ino) {
            return Ok(self.attr_of(ino, &stat));
        }
        let key = self.key_of(ino)?;
        match self.resolve(&key).await? {
            Some(stat) if stat.kind() == kind => Ok(self.attr_of(ino, &stat)),
            Some(_) => Err(FsError::Stale),
            // A file being written is still there for us even if someone deleted it.
            None if self.view_of(ino).is_some_and(|v| v.size.is_some()) => {
                Ok(self.detached_attr(ino, kind))
            }
            None => Err(FsError::NotFound),
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
}

/// How recent a lookup's "missing" answer must be for the create-type call that follows it to
/// trust it instead of asking COS again. The kernel sends the two back to back for one
/// `open(O_CREAT)`/`mkdir`; a name another client creates in between is as if created just
/// after ours. Never used to answer a lookup, stat, open or readdir.
const CREATE_AFTER_LOOKUP: std::time::Duration = std::time::Duration::from_millis(500);

/// Lays what an open file holds over attributes from COS: the size being written, the
/// attributes and times changed and not committed yet.
fn overlay(a: &mut Attr, v: &View) {
    if let Some(size) = v.size {
        a.size = size;
    }
    let p = &v.pending;
    if let Some(m) = p.mode {
        a.perm = (m & 0o7777) as u16;
    }
    a.uid = p.uid.unwrap_or(a.uid);
    a.gid = p.gid.unwrap_or(a.gid);
    a.mtime = p.mtime.unwrap_or(a.mtime);
    a.ctime = p.ctime.unwrap_or(a.ctime);
    a.atime = p.atime.unwrap_or(a.atime);
}

/// A file's stat as a HEAD (or a GET, which answers with the same headers) gives it.
pub(super) fn stat_of(info: &crate::cos::ObjectInfo) -> Stat {
    Stat::File(FileStat {
        size: info.size,
        etag: info.etag.clone(),
        last_modified: info.last_modified,
        meta: Some(MetaAttrs::parse(&info.user)),
    })
}
