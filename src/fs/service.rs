//! The service root: every bucket of the account in one mount (`cosmount --all-buckets`), the
//! seed's Servicer.
//!
//! The top directory is synthetic: its entries are the buckets GET Service lists, one
//! directory each. Below a bucket's directory everything is an ordinary bucket mount: each
//! bucket gets a `Filesystem` of its own, made the first time the bucket is looked up, with a
//! client for that bucket at its own region's endpoint (as GET Service reports the region).
//! `mkdir` at the top is PUT Bucket (in `--region`), `rmdir` DELETE Bucket; COS decides what
//! is allowed and its answers become errnos in error.rs.
//!
//! Inode numbers and file handles: the kernel sees one number space, each `Filesystem` has its
//! own. A bucket gets a slot, its place in `Buckets::slots` for the life of the mount (a
//! bucket deleted and made again gets a new one, so no stale inode reaches the new bucket's
//! files); the slot goes in the bits above `LOCAL_BITS`, the bucket's own number below. Slot 0
//! is the top directory (the kernel's root, inode 1) and its directory handles. A call is
//! routed by the slot of its inode or handle and answered by that bucket's `Filesystem`
//! unchanged, with the inode numbers of its answer moved into the slot.
//!
//! What other clients do shows as it does inside a bucket: a listing of the top asks GET
//! Service every time, a name not known is looked for with GET Service (unless a listing
//! younger than `--negative-ttl` lacks it), and a known bucket is trusted for
//! `--metadata-ttl` after the listing that had it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use super::attrs::{Attr, Ino, Kind, ROOT_INO};
use super::dir::{self, DirEntry, FIRST_ENTRY_OFFSET};
use super::error::{FsError, FsResult};
use super::handles::Written;
use super::meta_cache::{DirStat, Stat};
use super::operations::Operations;
use super::xattr::XattrReply;
use super::{Caller, Filesystem, FsConfig, Listed, OpenMode, Opened, SetAttr, StatFs};
use crate::cos::client::BucketSummary;
use crate::cos::{CosError, ObjectClient};

/// The clients a service mount needs: one for GET Service, and one per bucket, for the
/// bucket's region. main.rs makes them (fs/ knows no endpoint).
pub trait BucketClients: Send + Sync + 'static {
    /// A client for GET Service.
    fn service(&self) -> Arc<dyn ObjectClient>;
    /// A client for `bucket` in `region` (its own region's endpoint).
    fn bucket(&self, bucket: &str, region: &str) -> Result<Arc<dyn ObjectClient>, CosError>;
}

/// Bits of a kernel inode number or file handle that hold the bucket's own; the bits above hold
/// the bucket's slot. 2^40 inodes per bucket and 2^24 slots per mount are more than a mount
/// lives to use.
const LOCAL_BITS: u32 = 40;
const LOCAL_MASK: u64 = (1 << LOCAL_BITS) - 1;
/// Slot 0: the top directory and its handles.
const TOP: usize = 0;

fn to_kernel(slot: usize, local: u64) -> u64 {
    ((slot as u64) << LOCAL_BITS) | (local & LOCAL_MASK)
}

fn from_kernel(n: u64) -> (usize, u64) {
    ((n >> LOCAL_BITS) as usize, n & LOCAL_MASK)
}

fn in_slot(slot: usize, mut a: Attr) -> Attr {
    a.ino = to_kernel(slot, a.ino);
    a
}

/// Whether `name` can be sent as a bucket name at all: lowercase letters, digits and dashes
/// (what fits in a host name label). COS checks the rest (`-<appid>`, dashes at the ends,
/// length) and says InvalidBucketName.
fn may_be_bucket(name: &str) -> bool {
    dir::valid_name(name)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

struct Slot {
    name: String,
    region: String,
    created: Option<SystemTime>,
    /// Made when the bucket is first used.
    fs: Option<Arc<Filesystem>>,
}

#[derive(Default)]
struct Buckets {
    /// Index 0 stands for the top directory and holds no bucket.
    slots: Vec<Slot>,
    /// The slot of each bucket the last GET Service listed or this mount made since.
    by_name: BTreeMap<String, usize>,
    /// When the last GET Service that answered was asked.
    listed_at: Option<Instant>,
}

pub struct Service {
    clients: Arc<dyn BucketClients>,
    /// Every bucket's `Filesystem` is made with these settings.
    cfg: FsConfig,
    /// Where mkdir at the top makes buckets (`--region`); `None`: mkdir there is refused.
    region: Option<String>,
    buckets: Mutex<Buckets>,
    /// One GET Service at a time; callers that waited use its answer.
    listing: tokio::sync::Mutex<()>,
    /// Open handles of the top directory: the listing each one reads.
    dirs: Mutex<HashMap<u64, TopListing>>,
    next_fh: AtomicU64,
    /// The top directory's mtime and ctime: mount time, then its last mkdir or rmdir.
    changed: Mutex<SystemTime>,
}

impl Service {
    pub fn new(clients: Arc<dyn BucketClients>, cfg: FsConfig, region: Option<String>) -> Self {
        let placeholder = Slot {
            name: String::new(),
            region: String::new(),
            created: None,
            fs: None,
        };
        Service {
            clients,
            cfg,
            region,
            buckets: Mutex::new(Buckets {
                slots: vec![placeholder],
                ..Default::default()
            }),
            listing: tokio::sync::Mutex::new(()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            changed: Mutex::new(dir::implicit_dir_time()),
        }
    }

    /// GET Service, once for every caller waiting on it: afterwards `by_name` holds what a
    /// listing asked for no earlier than this call knows.
    async fn refresh(&self) -> FsResult<()> {
        let wanted = Instant::now();
        let _one = self.listing.lock().await;
        if self.buckets.lock().listed_at.is_some_and(|t| t >= wanted) {
            return Ok(());
        }
        let asked = Instant::now();
        let list = self.clients.service().list_buckets().await?;
        let mut b = self.buckets.lock();
        let mut by_name = BTreeMap::new();
        for summary in list {
            // A bucket keeps its slot unless it is now in another region (made again).
            let kept = b
                .by_name
                .get(&summary.name)
                .copied()
                .filter(|&s| b.slots[s].region == summary.location);
            let slot = match kept {
                Some(s) => s,
                None => b.new_slot(&summary),
            };
            by_name.insert(summary.name, slot);
        }
        b.by_name = by_name;
        b.listed_at = Some(asked);
        Ok(())
    }

    /// The slot of bucket `name`, asking GET Service again unless the last answer is fresh
    /// enough for this question (see the module comment). A failed GET Service leaves a
    /// known bucket usable.
    async fn find(&self, name: &str) -> FsResult<Option<usize>> {
        let known = {
            let b = self.buckets.lock();
            let known = b.by_name.get(name).copied();
            let age = b.listed_at.map(|t| t.elapsed());
            let trusted = match known {
                Some(_) => self
                    .cfg
                    .metadata_ttl
                    .is_none_or(|ttl| age.is_some_and(|a| a < ttl)),
                None => age.is_some_and(|a| a < self.cfg.negative_ttl),
            };
            if trusted {
                return Ok(known);
            }
            known
        };
        match self.refresh().await {
            Ok(()) => Ok(self.buckets.lock().by_name.get(name).copied()),
            Err(e) if known.is_some() => {
                log::warn!("cannot list the buckets again ({e}); using what was listed before");
                Ok(known)
            }
            Err(e) => Err(e),
        }
    }

    /// The bucket's `Filesystem`, made on first use.
    fn bucket_fs(&self, slot: usize) -> FsResult<Arc<Filesystem>> {
        let mut b = self.buckets.lock();
        let s = b
            .slots
            .get_mut(slot)
            .filter(|_| slot != TOP)
            .ok_or(FsError::Stale)?;
        if let Some(fs) = &s.fs {
            return Ok(fs.clone());
        }
        let client = self.clients.bucket(&s.name, &s.region)?;
        let fs = Arc::new(Filesystem::new(client, self.cfg.clone()));
        // A bucket's directory shows when the bucket was made (COS keeps no other time).
        if let Some(t) = s.created {
            let mut root = fs.root_attrs.lock();
            root.mtime = Some(t);
            root.ctime = Some(t);
        }
        s.fs = Some(fs.clone());
        Ok(fs)
    }

    /// The bucket of a kernel inode or handle, with the bucket's own number for it.
    fn route(&self, n: u64) -> FsResult<(usize, u64, Arc<Filesystem>)> {
        let (slot, local) = from_kernel(n);
        Ok((slot, local, self.bucket_fs(slot)?))
    }

    /// Like `route`, for a call naming a directory and a handle (setattr): both in one bucket.
    fn route_both(&self, ino: Ino, fh: Option<u64>) -> FsResult<(usize, u64, Option<u64>)> {
        let (slot, local) = from_kernel(ino);
        match fh.map(from_kernel) {
            Some((s, _)) if s != slot => Err(FsError::BadHandle),
            f => Ok((slot, local, f.map(|(_, h)| h))),
        }
    }

    /// Like `route`, for a call that makes an entry in directory `parent`, which the top is not
    /// for (it holds buckets only).
    fn route_maker(&self, parent: Ino) -> FsResult<(usize, u64, Arc<Filesystem>)> {
        if parent == ROOT_INO {
            return Err(ONLY_BUCKETS);
        }
        self.route(parent)
    }

    fn bucket_root(&self, slot: usize) -> FsResult<Attr> {
        Ok(in_slot(slot, self.bucket_fs(slot)?.root_attr()))
    }

    fn top_attr(&self) -> Attr {
        let t = *self.changed.lock();
        let d = &self.cfg.defaults;
        Attr {
            ino: ROOT_INO,
            kind: Kind::Dir,
            size: 0,
            perm: d.dir_mode,
            uid: d.uid,
            gid: d.gid,
            mtime: t,
            ctime: t,
            atime: t,
            rdev: 0,
            nlink: 2,
        }
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// mkdir at the top: PUT Bucket in `--region`.
    async fn make_bucket(&self, name: &str) -> FsResult<Attr> {
        self.check_writable()?;
        if !may_be_bucket(name) {
            log::info!(
                "mkdir {name:?}: a bucket name is <name>-<appid> in lowercase letters, digits and dashes"
            );
            return Err(FsError::Invalid("not a bucket name"));
        }
        let Some(region) = self.region.clone() else {
            log::info!("mkdir {name:?}: making a bucket needs --region (the region to make it in)");
            return Err(FsError::NotPermitted("making a bucket needs --region"));
        };
        if self.buckets.lock().by_name.contains_key(name) {
            return Err(FsError::Exists);
        }
        let client = self.clients.bucket(name, &region)?;
        if let Err(e) = client.put_bucket().await {
            let fs_err = FsError::from_bucket_call(e);
            log::info!("mkdir {name:?}: PUT Bucket in {region}: {fs_err}");
            return Err(fs_err);
        }
        log::info!("made bucket {name} in {region}");
        let now = SystemTime::now();
        let slot = {
            let mut b = self.buckets.lock();
            let slot = b.new_slot(&BucketSummary {
                name: name.to_string(),
                location: region,
                creation_date: String::new(),
            });
            b.slots[slot].created = Some(now);
            b.by_name.insert(name.to_string(), slot);
            slot
        };
        *self.changed.lock() = now;
        self.bucket_root(slot)
    }

    /// rmdir at the top: DELETE Bucket, which COS refuses unless the bucket is empty.
    async fn remove_bucket(&self, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let slot = self.find(name).await?.ok_or(FsError::NotFound)?;
        let fs = self.bucket_fs(slot)?;
        // Files open here may not be stored yet: COS would find the bucket empty.
        if !fs.files.lock().is_empty() {
            log::info!("rmdir {name:?}: files are open in the bucket");
            return Err(FsError::NotEmpty);
        }
        if let Err(e) = fs.client.delete_bucket().await {
            let fs_err = FsError::from_bucket_call(e);
            if matches!(fs_err, FsError::NotEmpty) {
                log::info!(
                    "rmdir {name:?}: COS says the bucket is not empty (objects, or incomplete multipart uploads: `cosmount cleanup-uploads {name}` lists them)"
                );
            } else {
                log::info!("rmdir {name:?}: DELETE Bucket: {fs_err}");
            }
            if matches!(fs_err, FsError::NotFound) {
                self.buckets.lock().by_name.remove(name);
            }
            return Err(fs_err);
        }
        log::info!("deleted bucket {name}");
        self.buckets.lock().by_name.remove(name);
        *self.changed.lock() = SystemTime::now();
        Ok(())
    }

    /// The slot last given to a bucket of this name, listed or not now.
    fn last_slot_of(&self, name: &str) -> Option<usize> {
        let b = self.buckets.lock();
        b.by_name.get(name).copied().or_else(|| {
            b.slots
                .iter()
                .rposition(|s| s.name == name)
                .filter(|&s| s != TOP)
        })
    }
}

impl Buckets {
    fn new_slot(&mut self, summary: &BucketSummary) -> usize {
        self.slots.push(Slot {
            name: summary.name.clone(),
            region: summary.location.clone(),
            created: summary.created(),
            fs: None,
        });
        self.slots.len() - 1
    }
}

/// What a handle of the top directory reads: each bucket's name and slot, by name.
type TopListing = Arc<Vec<(String, usize)>>;

/// Refused at the top, which holds buckets only.
const ONLY_BUCKETS: FsError = FsError::NotPermitted("the top directory holds buckets only");

impl Operations for Service {
    fn config(&self) -> &FsConfig {
        &self.cfg
    }

    fn ttl(&self) -> Duration {
        self.cfg
            .metadata_ttl
            .unwrap_or(Duration::from_secs(365 * 24 * 3600))
    }

    fn statfs(&self) -> StatFs {
        StatFs::FIGURES
    }

    /// No data cache serves a service mount (`--data-cache` is refused with `--all-buckets`).
    fn wants_passthrough(&self) -> bool {
        false
    }

    fn set_passthrough(&self, _on: bool) {}

    fn write_now(&self, fh: u64, offset: u64, data: &[u8], drop_setid: bool) -> Option<Written> {
        let (_, local, fs) = self.route(fh).ok()?;
        fs.write_now(local, offset, data, drop_setid)
    }

    async fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr> {
        if parent == ROOT_INO {
            if !may_be_bucket(name) {
                return Err(FsError::NotFound);
            }
            let slot = self.find(name).await?.ok_or(FsError::NotFound)?;
            return self.bucket_root(slot);
        }
        let (slot, local, fs) = self.route(parent)?;
        Ok(in_slot(slot, fs.lookup(local, name).await?))
    }

    fn remember(&self, parent: Ino, entry: &DirEntry) -> Attr {
        if parent == ROOT_INO {
            // An entry of the top's own listing: a bucket's directory.
            return self
                .last_slot_of(&entry.name)
                .and_then(|slot| self.bucket_root(slot).ok())
                .unwrap_or_else(|| Attr {
                    ino: u64::MAX,
                    ..self.top_attr()
                });
        }
        match self.route(parent) {
            Ok((slot, local, fs)) => in_slot(slot, fs.remember(local, entry)),
            // The adapter only passes back parents it was given: not reached.
            Err(_) => Attr {
                ino: u64::MAX,
                ..self.top_attr()
            },
        }
    }

    fn forget(&self, ino: Ino, n: u64) {
        let (slot, local) = from_kernel(ino);
        if slot != TOP
            && let Ok(fs) = self.bucket_fs(slot)
        {
            fs.forget(local, n);
        }
    }

    async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Ok(self.top_attr());
        }
        let (slot, local, fs) = self.route(ino)?;
        Ok(in_slot(slot, fs.getattr(local).await?))
    }

    async fn setattr(&self, ino: Ino, fh: Option<u64>, change: SetAttr) -> FsResult<Attr> {
        if ino == ROOT_INO {
            return Err(ONLY_BUCKETS);
        }
        let (slot, local, fh) = self.route_both(ino, fh)?;
        let fs = self.bucket_fs(slot)?;
        Ok(in_slot(slot, fs.setattr(local, fh, change).await?))
    }

    async fn readlink(&self, ino: Ino) -> FsResult<String> {
        if ino == ROOT_INO {
            return Err(FsError::Invalid("not a symlink"));
        }
        let (_, local, fs) = self.route(ino)?;
        fs.readlink(local).await
    }

    async fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> FsResult<Attr> {
        if parent == ROOT_INO {
            return self.make_bucket(name).await;
        }
        let (slot, local, fs) = self.route(parent)?;
        Ok(in_slot(slot, fs.mkdir(local, name, mode, caller).await?))
    }

    async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let (slot, local, fs) = self.route_maker(parent)?;
        Ok(in_slot(
            slot,
            fs.mknod(local, name, mode, rdev, caller).await?,
        ))
    }

    async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> FsResult<Attr> {
        let (slot, local, fs) = self.route_maker(parent)?;
        Ok(in_slot(
            slot,
            fs.symlink(local, name, target, caller).await?,
        ))
    }

    async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        if parent == ROOT_INO {
            // Every name at the top is a bucket's directory.
            return match self.find(name).await? {
                Some(_) => Err(FsError::IsDir),
                None => Err(FsError::NotFound),
            };
        }
        let (_, local, fs) = self.route(parent)?;
        fs.unlink(local, name).await
    }

    async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        if parent == ROOT_INO {
            return self.remove_bucket(name).await;
        }
        let (_, local, fs) = self.route(parent)?;
        fs.rmdir(local, name).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        if parent == ROOT_INO || new_parent == ROOT_INO {
            return Err(FsError::NotPermitted("COS cannot rename a bucket"));
        }
        let (from, local) = from_kernel(parent);
        let (to, new_local) = from_kernel(new_parent);
        if from != to {
            return Err(FsError::CrossDevice(
                "each bucket is a file system of its own",
            ));
        }
        let fs = self.bucket_fs(from)?;
        fs.rename(local, name, new_local, new_name, noreplace).await
    }

    fn link(&self) -> FsResult<Attr> {
        Err(FsError::NotPermitted("hard links are not supported on COS"))
    }

    async fn open(&self, ino: Ino, mode: OpenMode) -> FsResult<Opened> {
        if ino == ROOT_INO {
            return Err(FsError::IsDir);
        }
        let (slot, local, fs) = self.route(ino)?;
        let o = fs.open(local, mode).await?;
        Ok(Opened {
            fh: to_kernel(slot, o.fh),
            ..o
        })
    }

    async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        open: OpenMode,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        let (slot, local, fs) = self.route_maker(parent)?;
        let (attr, o) = fs.create(local, name, mode, open, caller).await?;
        let o = Opened {
            fh: to_kernel(slot, o.fh),
            ..o
        };
        Ok((in_slot(slot, attr), o))
    }

    async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let (_, local, fs) = self.route(fh)?;
        fs.read(local, offset, size).await
    }

    async fn write(
        &self,
        fh: u64,
        offset: u64,
        data: Bytes,
        drop_setid: bool,
    ) -> FsResult<Written> {
        let (_, local, fs) = self.route(fh)?;
        fs.write(local, offset, data, drop_setid).await
    }

    async fn flush(&self, fh: u64, caller: Option<u32>) -> FsResult<()> {
        let (_, local, fs) = self.route(fh)?;
        fs.flush(local, caller).await
    }

    async fn fsync(&self, fh: u64) -> FsResult<()> {
        let (_, local, fs) = self.route(fh)?;
        fs.fsync(local).await
    }

    async fn release(&self, fh: u64) -> FsResult<()> {
        let (_, local, fs) = self.route(fh)?;
        fs.release(local).await
    }

    async fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let (_, local, fs) = self.route(fh)?;
        fs.fallocate(local, offset, len, mode).await
    }

    async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        if ino == ROOT_INO {
            // A listing of the top asks COS every time: other clients' buckets show at once.
            self.refresh().await?;
            let entries: Vec<(String, usize)> = self
                .buckets
                .lock()
                .by_name
                .iter()
                .map(|(n, s)| (n.clone(), *s))
                .collect();
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed) & LOCAL_MASK;
            self.dirs.lock().insert(fh, Arc::new(entries));
            return Ok(to_kernel(TOP, fh));
        }
        let (slot, local, fs) = self.route(ino)?;
        Ok(to_kernel(slot, fs.opendir(local).await?))
    }

    async fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<Listed>> {
        let (slot, local) = from_kernel(fh);
        if slot == TOP {
            let entries = self
                .dirs
                .lock()
                .get(&local)
                .cloned()
                .ok_or(FsError::BadHandle)?;
            return Ok(top_listing(&entries, offset, max));
        }
        let fs = self.bucket_fs(slot)?;
        let mut listed = fs.readdir(local, offset, max).await?;
        for e in &mut listed {
            e.ino = to_kernel(slot, e.ino);
        }
        Ok(listed)
    }

    fn releasedir(&self, fh: u64) {
        let (slot, local) = from_kernel(fh);
        if slot == TOP {
            self.dirs.lock().remove(&local);
        } else if let Ok(fs) = self.bucket_fs(slot) {
            fs.releasedir(local);
        }
    }

    async fn getxattr(&self, ino: Ino, name: &str, size: u32) -> FsResult<XattrReply> {
        if ino == ROOT_INO {
            self.top_xattrs()?;
            return Err(FsError::NoAttr);
        }
        let (_, local, fs) = self.route(ino)?;
        fs.getxattr(local, name, size).await
    }

    async fn listxattr(&self, ino: Ino, size: u32) -> FsResult<XattrReply> {
        if ino == ROOT_INO {
            self.top_xattrs()?;
            return Ok(if size == 0 {
                XattrReply::Size(0)
            } else {
                XattrReply::Data(Vec::new())
            });
        }
        let (_, local, fs) = self.route(ino)?;
        fs.listxattr(local, size).await
    }

    async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> FsResult<()> {
        if ino == ROOT_INO {
            self.top_xattrs()?;
            return Err(ONLY_BUCKETS);
        }
        let (_, local, fs) = self.route(ino)?;
        fs.setxattr(local, name, value, create, replace).await
    }

    async fn removexattr(&self, ino: Ino, name: &str) -> FsResult<()> {
        if ino == ROOT_INO {
            self.top_xattrs()?;
            return Err(FsError::NoAttr);
        }
        let (_, local, fs) = self.route(ino)?;
        fs.removexattr(local, name).await
    }

    async fn shutdown(&self) {
        let all: Vec<Arc<Filesystem>> = self
            .buckets
            .lock()
            .slots
            .iter()
            .filter_map(|s| s.fs.clone())
            .collect();
        for fs in all {
            fs.shutdown().await;
        }
    }
}

impl Service {
    /// The top has no extended attributes; with `--no-xattr` it answers as buckets do.
    fn top_xattrs(&self) -> FsResult<()> {
        if self.cfg.xattrs {
            Ok(())
        } else {
            Err(FsError::XattrsOff)
        }
    }
}

/// Entries of the top directory from `offset` on: `.`, `..`, then one directory per bucket,
/// at the offsets a bucket's directory uses (dir.rs).
fn top_listing(entries: &[(String, usize)], offset: u64, max: usize) -> Vec<Listed> {
    let dot = |name: &str, next: u64| Listed {
        next_offset: next,
        name: name.into(),
        kind: Kind::Dir,
        entry: None,
        ino: ROOT_INO,
    };
    let mut out = Vec::new();
    if offset < 1 {
        out.push(dot(".", 1));
    }
    if offset < 2 {
        out.push(dot("..", 2));
    }
    let start = offset.saturating_sub(FIRST_ENTRY_OFFSET - 1) as usize;
    for (i, (name, slot)) in entries.iter().enumerate().skip(start).take(max) {
        out.push(Listed {
            next_offset: i as u64 + FIRST_ENTRY_OFFSET,
            name: name.clone(),
            kind: Kind::Dir,
            entry: Some(DirEntry {
                name: name.clone(),
                stat: Stat::Dir(DirStat::probed(None)),
            }),
            ino: to_kernel(*slot, ROOT_INO),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_bucket() {
        assert_eq!(to_kernel(TOP, ROOT_INO), ROOT_INO);
        let n = to_kernel(3, 42);
        assert_eq!(from_kernel(n), (3, 42));
        assert_ne!(to_kernel(1, ROOT_INO), to_kernel(2, ROOT_INO));
        // readdir's stand-in numbers for entries not looked up stay in their bucket.
        assert_eq!(from_kernel(to_kernel(5, u64::MAX - 7)).0, 5);
    }

    #[test]
    fn names_that_cannot_be_buckets() {
        assert!(may_be_bucket("photos-1250000000"));
        assert!(may_be_bucket("no-appid"), "COS decides what else is wrong");
        for bad in [
            "Photos-1250000000",
            "a_b-1",
            "a.b-1",
            "",
            ".",
            "..",
            "x y-1",
        ] {
            assert!(!may_be_bucket(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_top_listing_reads_on_from_any_offset() {
        let entries = vec![("a-1".to_string(), 1), ("b-1".to_string(), 2)];
        let all = top_listing(&entries, 0, 10);
        let names: Vec<_> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "a-1", "b-1"]);
        assert_eq!(all[3].ino, to_kernel(2, ROOT_INO));
        let rest = top_listing(&entries, all[2].next_offset, 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "b-1");
        assert!(top_listing(&entries, all[3].next_offset, 10).is_empty());
    }
}
