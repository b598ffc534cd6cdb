//! Write handles: every byte written is kept in a staging file on local disk (`--cache-dir`,
//! created and unlinked at once, so a crash leaves nothing behind), and the object is replaced
//! on commit (flush, fsync, release) by one PUT or one multipart upload. The part an appending
//! writer is filling waits in memory (`Tail`) and goes up from there when full.
//!
//! The layout of parts is fixed by offset (`part_bounds`), so the handle can upload parts
//! while the writer still writes: when a write crosses the end of a part of a file that is
//! already larger than one part, that part goes up in the background (at most
//! `--max-concurrency` uploads in flight per mount). A part written again later is uploaded
//! again at commit (each part carries a generation number). At commit, parts that are
//! unchanged ranges of the previous object are copied server-side with Upload Part - Copy, so
//! appending to a large object moves only the new bytes; ranges of the old object that are
//! needed locally are fetched lazily. A commit either replaces the object atomically (PUT or
//! Complete) or fails with the old object intact and the multipart upload aborted; the handle
//! then reports the failure (EIO) from every later flush/fsync.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::attrs::{MetaAttrs, without_setid};
use super::error::{FsError, FsResult};
use super::ranges::RangeSet;
use super::read::{Version, fetch_range};
use crate::cos::client::{
    CompletedPart, MAX_PARTS, MAX_SINGLE_UPLOAD, MIN_PART_SIZE, PartOutput, PutOutput,
};
use crate::cos::{Body, CosError, ObjectClient, ObjectMetadata, PutObject};
use crate::direct_io::{self, AlignedBuf};

/// The largest part COS accepts (§4).
const MAX_PART_SIZE: u64 = 5 << 30;
/// Parts of the base size before the schedule starts growing them.
const FIXED_PARTS: u32 = 1000;
/// After `FIXED_PARTS`, the part size doubles every this many parts (capped at 5 GiB), so a
/// file with 10,000 parts of an 8 MiB base size reaches about 40 TiB.
const GROWTH_STEP: u32 = 100;
/// Granularity of lazy fetches from the old object when reading through a write handle.
const FETCH_ALIGN: u64 = 1 << 20;

/// Parts of a server-side copy of an object over 5 GiB.
const COPY_PART_SIZE: u64 = 1 << 30;

/// Copies object `src` to `dst` inside the bucket, server-side: one PUT Object - Copy up to
/// 5 GiB, Upload Part - Copy above (`concurrency` parts at once). `metadata`: `None` keeps the
/// source's, with its storage class `class` (a copy does not keep it by itself), `Some`
/// replaces it, class included (a copy onto itself changes only metadata).
pub async fn server_side_copy(
    client: &dyn ObjectClient,
    src: &str,
    dst: &str,
    size: u64,
    metadata: Option<ObjectMetadata>,
    class: Option<String>,
    concurrency: usize,
) -> FsResult<PutOutput> {
    use futures::{StreamExt, TryStreamExt};
    if size <= MAX_SINGLE_UPLOAD {
        let mut req = crate::cos::CopyObject::new(src, dst).storage_class(class);
        if let Some(m) = metadata {
            req = req.replace_metadata(m);
        }
        return client.copy_object(req).await.map_err(FsError::from_read);
    }
    let info = client.head_object(src).await.map_err(FsError::from_read)?;
    let metadata = metadata.unwrap_or_else(|| info.metadata());
    let id = client
        .create_multipart_upload(dst, &metadata)
        .await
        .map_err(FsError::Cos)?;
    let ranges: Vec<(u32, u64, u64)> = (0..info.size.div_ceil(COPY_PART_SIZE))
        .map(|i| {
            let s = i * COPY_PART_SIZE;
            ((i + 1) as u32, s, (s + COPY_PART_SIZE).min(info.size))
        })
        .collect();
    let result: Result<Vec<CompletedPart>, CosError> = futures::stream::iter(ranges)
        .map(|(n, s, e)| {
            let (id, etag) = (id.clone(), info.etag.clone());
            async move {
                client
                    .upload_part_copy(dst, &id, n, src, Some((s, e)), Some(&etag))
                    .await
                    .map(|p| CompletedPart {
                        part_number: n,
                        etag: p.etag,
                    })
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await;
    let done = match result {
        Ok(parts) => client.complete_multipart_upload(dst, &id, &parts).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(out) => Ok(out),
        Err(e) => {
            let _ = client.abort_multipart_upload(dst, &id).await;
            Err(FsError::from_read(e))
        }
    }
}

/// Whether `new` differs from `old` in anything but the times of the last change (unless
/// they were set explicitly, by utimens).
fn metadata_changed(old: &ObjectMetadata, new: &ObjectMetadata, explicit_times: bool) -> bool {
    let strip = |m: &ObjectMetadata| {
        let mut user = m.user.clone();
        if !explicit_times {
            for t in [
                super::attrs::META_MTIME,
                super::attrs::META_CTIME,
                super::attrs::META_ATIME,
            ] {
                user.remove(t);
            }
        }
        (m.content_type.clone(), user)
    };
    strip(old) != strip(new)
}

/// The Content-Type for a new object named `key`, from its extension (mime_guess's table);
/// `None` (COS's default, application/octet-stream) when the extension is unknown.
pub fn content_type_of(key: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    mime_guess::from_path(name)
        .first()
        .map(|m| m.essence_str().to_string())
}

/// The size of part `i` (0-based) for base part size `ps`.
pub fn part_len(i: u32, ps: u64) -> u64 {
    if i < FIXED_PARTS {
        return ps;
    }
    let doublings = (i - FIXED_PARTS) / GROWTH_STEP + 1;
    ps.saturating_mul(1u64 << doublings.min(40))
        .min(MAX_PART_SIZE)
}

/// `[start, end)` of part `i`.
pub fn part_bounds(i: u32, ps: u64) -> (u64, u64) {
    let mut start = 0u64;
    if i <= FIXED_PARTS {
        start = i as u64 * ps;
    } else {
        start += FIXED_PARTS as u64 * ps;
        let mut j = FIXED_PARTS;
        while j < i {
            let group_end =
                (j - FIXED_PARTS) / GROWTH_STEP * GROWTH_STEP + FIXED_PARTS + GROWTH_STEP;
            let n = group_end.min(i) - j;
            start = start.saturating_add(n as u64 * part_len(j, ps));
            j += n;
        }
    }
    (start, start.saturating_add(part_len(i, ps)))
}

/// The part holding byte `offset`.
pub fn part_at(offset: u64, ps: u64) -> u32 {
    if offset < FIXED_PARTS as u64 * ps {
        return (offset / ps) as u32;
    }
    let (mut lo, mut hi) = (FIXED_PARTS, MAX_PARTS * 4);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if part_bounds(mid, ps).1 <= offset {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The largest file the part schedule can hold.
pub fn max_file_size(ps: u64) -> u64 {
    part_bounds(MAX_PARTS - 1, ps).1
}

#[derive(Debug, Clone)]
pub struct WriteConfig {
    /// Base part size (`--part-size`, default 8 MiB); files up to it are one PUT.
    pub part_size: u64,
    pub cache_dir: PathBuf,
    /// Memory the mount lends to the tails of sequential writers (see `Tail`), in KiB.
    pub tail_memory: Arc<Semaphore>,
    /// The data cache (`--data-cache`): base ranges are looked for there first.
    pub data_cache: Option<Arc<super::data_cache::DataCache>>,
}

/// Memory a mount lends to the tails of sequential writers (`Tail`); the parts they hand to
/// uploads keep their share until sent.
pub const TAIL_MEMORY: u64 = 256 << 20;

/// The last bytes of a file written sequentially from the start of a part, held in memory
/// instead of the staging file. When the part is full and the writer goes on, the part goes
/// up from this memory and reaches the staging file by direct I/O: a streamed file costs no
/// copy through the page cache (on small machines the largest cost of the write path). Any
/// other access first spills the tail into the staging file, so everything else sees one
/// file. Invariant: the staging file holds every present byte except `[start, end())`.
struct Tail {
    /// The part this tail fills, from its first byte at `start`.
    part: u32,
    start: u64,
    /// The bytes, aligned for direct I/O; its capacity is the part's length.
    buf: AlignedBuf,
    /// The share of `TAIL_MEMORY` these bytes hold; it goes with them to the upload.
    memory: tokio::sync::OwnedSemaphorePermit,
}

impl Tail {
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn end(&self) -> u64 {
        self.start + self.len() as u64
    }

    fn is_full(&self) -> bool {
        self.buf.room() == 0
    }

    fn bytes(&self) -> &[u8] {
        self.buf.bytes()
    }
}

/// The object a handle started from.
#[derive(Debug, Clone)]
pub struct Base {
    pub version: Version,
    pub metadata: ObjectMetadata,
}

type PartTask = JoinHandle<Result<PartOutput, CosError>>;

enum PartSlot {
    InFlight {
        generation: u64,
        len: u64,
        task: PartTask,
    },
    Done {
        generation: u64,
        len: u64,
        etag: String,
    },
}

struct Multipart {
    key: String,
    upload_id: String,
    parts: BTreeMap<u32, PartSlot>,
    /// The metadata the upload was initiated with (Complete keeps it).
    metadata: ObjectMetadata,
}

/// What a successful commit produced.
#[derive(Debug, Clone)]
pub struct Committed {
    pub etag: String,
    pub size: u64,
    pub metadata: ObjectMetadata,
    pub last_modified: SystemTime,
}

pub struct WriteHandle {
    client: Arc<dyn ObjectClient>,
    /// The object key this handle commits to (updated when the file is renamed).
    key: String,
    cfg: WriteConfig,
    slots: Arc<Semaphore>,
    base: Option<Base>,
    /// Bytes of the base object still valid at their offsets (a truncation shortens it).
    base_valid: u64,
    file: Option<Arc<std::fs::File>>,
    /// The staging file opened a second time with `O_DIRECT` (None where not supported).
    direct: Option<Arc<std::fs::File>>,
    /// A full part on its way into the staging file while the writer goes on (its upload
    /// goes from memory). Every other use of the staging file waits for it first (`file`).
    staging_write: Option<JoinHandle<std::io::Result<()>>>,
    tail: Option<Tail>,
    size: u64,
    present: RangeSet,
    dirty: RangeSet,
    gens: HashMap<u32, u64>,
    content_dirty: bool,
    meta_dirty: bool,
    /// Bytes were written or the size was set through this handle since the last commit
    /// (unlike the truncation of O_TRUNC at open, which alone waits for release; see
    /// `worth_committing_at_flush`).
    touched: bool,
    /// Attributes to store at the next commit: those set by chmod, chown and utimens, and the
    /// times of the last change of the content.
    attrs: MetaAttrs,
    /// The times in `attrs` were set by utimens, not by a change of the content.
    explicit_times: bool,
    /// Every byte is local and reads come from here (the file was removed while open).
    local_only: bool,
    upload: Option<Multipart>,
    failed: bool,
}

/// A new staging file, and the same file opened for direct I/O where the file system allows.
fn create_staging_file(dir: &Path) -> FsResult<(std::fs::File, Option<std::fs::File>)> {
    std::fs::create_dir_all(dir)?;
    let mut rng_name = String::new();
    for _ in 0..4 {
        rng_name.push_str(&format!("{:08x}", rand::random::<u32>()));
    }
    let path = dir.join(format!("cosmount-staging-{rng_name}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let direct = direct_io::open(&path);
    // Unlinked at once: the data live while the handle does and vanish on any exit or crash.
    std::fs::remove_file(&path)?;
    Ok((file, direct))
}

impl WriteHandle {
    /// A handle on `base` (None for a new file). `truncate`: the content starts empty
    /// (O_TRUNC, or a new file), which is itself a change to commit.
    pub fn new(
        client: Arc<dyn ObjectClient>,
        cfg: WriteConfig,
        slots: Arc<Semaphore>,
        key: String,
        base: Option<Base>,
        truncate: bool,
        attrs: MetaAttrs,
    ) -> Self {
        let base_size = base.as_ref().map(|b| b.version.size).unwrap_or(0);
        let (size, base_valid) = if truncate {
            (0, 0)
        } else {
            (base_size, base_size)
        };
        let mut attrs = attrs;
        if truncate && base.is_some() {
            // O_TRUNC of an existing file changes it now.
            let now = SystemTime::now();
            attrs.mtime = Some(now);
            attrs.ctime = Some(now);
        }
        WriteHandle {
            client,
            key,
            cfg,
            slots,
            base_valid,
            content_dirty: truncate || base.is_none(),
            meta_dirty: false,
            touched: false,
            base,
            file: None,
            direct: None,
            staging_write: None,
            tail: None,
            size,
            present: RangeSet::new(),
            dirty: RangeSet::new(),
            gens: HashMap::new(),
            attrs,
            explicit_times: false,
            local_only: false,
            upload: None,
            failed: false,
        }
    }

    /// The attributes the next commit stores beyond the base's (what `stat` shows meanwhile).
    pub fn pending_attrs(&self) -> &MetaAttrs {
        &self.attrs
    }

    /// Whether a commit failed: every later write, flush and fsync of the file fails too.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// The content changed now: the modification and change times follow.
    fn changed_now(&mut self) {
        let now = SystemTime::now();
        self.attrs.mtime = Some(now);
        self.attrs.ctime = Some(now);
        self.explicit_times = false;
        self.content_dirty = true;
        self.touched = true;
    }

    /// Brings every byte of the file into the staging file, so that it can be read and written
    /// after its object is gone (the file was removed while open); reads come from here since.
    pub async fn materialize(&mut self) -> FsResult<()> {
        self.check()?;
        self.spill_tail().await?;
        self.file().await?;
        self.ensure_present(0, self.size, false).await?;
        self.local_only = true;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The file was renamed: later commits go to `key`.
    pub fn set_key(&mut self, key: String) {
        self.key = key;
    }

    pub fn is_dirty(&self) -> bool {
        self.content_dirty || self.meta_dirty
    }

    /// The file was renamed to `key`, where its last committed version now is as `etag`.
    pub fn rebase(&mut self, key: String, etag: Option<String>) {
        if let Some(b) = self.base.as_mut() {
            b.version.key = key.clone();
            // With the copy's ETag unknown, later fetches fail (412) rather than mix versions.
            if let Some(e) = etag {
                b.version.etag = e;
            }
        }
        self.key = key;
    }

    /// Whether a flush (a close of one descriptor) should commit now. A handle whose only
    /// change is the O_TRUNC of an existing object waits for release or fsync: programs like
    /// dd open, dup2 and close the first descriptor before writing, and committing then would
    /// replace the old object by an empty one before any new byte arrives.
    pub fn worth_committing_at_flush(&self) -> bool {
        self.touched || self.meta_dirty || (self.content_dirty && self.base.is_none())
    }

    /// Whether reads must come through the handle (something was written or truncated, or
    /// bytes wait in memory).
    pub fn has_local_content(&self) -> bool {
        self.content_dirty || self.file.is_some() || self.tail.is_some() || self.local_only
    }

    pub fn base(&self) -> Option<&Base> {
        self.base.as_ref()
    }

    /// Clears the file's set-ID bits as a change of content by a process that may not keep
    /// them does (`attrs::without_setid`); committed with the content. No request: the mode is
    /// this handle's or its base object's (every write of a user without CAP_FSETID asks, so
    /// only the mode is read). Whether the mode changed.
    pub fn drop_setid_bits(&mut self) -> bool {
        let mode =
            (self.attrs.mode).or_else(|| MetaAttrs::mode_of(&self.base.as_ref()?.metadata.user));
        let Some(mode) = mode else {
            return false;
        };
        let cleared = without_setid(mode);
        if cleared != mode {
            self.set_attrs(&MetaAttrs {
                mode: Some(cleared),
                ctime: Some(SystemTime::now()),
                ..MetaAttrs::default()
            });
            return true;
        }
        false
    }

    /// Attribute changes (chmod, chown, utimens) that ride along with the next commit.
    pub fn set_attrs(&mut self, change: &MetaAttrs) {
        self.attrs.merge(change);
        if change.mtime.is_some() || change.atime.is_some() {
            self.explicit_times = true;
        }
        self.meta_dirty = true;
    }

    fn check(&self) -> FsResult<()> {
        if self.failed {
            Err(FsError::CommitFailed)
        } else {
            Ok(())
        }
    }

    /// The staging file (made on first use), once the part on its way into it has landed.
    async fn file(&mut self) -> FsResult<Arc<std::fs::File>> {
        self.settle_staging().await?;
        if self.file.is_none() {
            let (f, direct) = create_staging_file(&self.cfg.cache_dir)?;
            // Only when there is something to extend: ext4 flushes a truncated file's data
            // on close (its replace-by-truncate heuristic), which costs every small file.
            if self.size > 0 {
                f.set_len(self.size)?;
            }
            self.file = Some(Arc::new(f));
            self.direct = direct.map(Arc::new);
        }
        Ok(self.file.clone().expect("set above"))
    }

    /// Waits for the part on its way into the staging file; if it could not be written, the
    /// handle fails (its bytes are recorded as present).
    async fn settle_staging(&mut self) -> FsResult<()> {
        let Some(h) = self.staging_write.take() else {
            return Ok(());
        };
        let written = match h.await {
            Ok(r) => r.map_err(FsError::from),
            Err(e) => Err(FsError::Local(e.to_string())),
        };
        if let Err(e) = &written {
            log::error!(
                "{}: cannot store written bytes in the staging file: {e}",
                self.key
            );
            self.failed = true;
        }
        written
    }

    fn touch_parts(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let ps = self.cfg.part_size;
        for i in part_at(start, ps)..=part_at(end - 1, ps) {
            *self.gens.entry(i).or_default() += 1;
        }
    }

    /// Records `[offset, end)` as written now (a gap before it reads as zeros).
    fn record(&mut self, offset: u64, end: u64) {
        if offset > self.size {
            // The gap reads as zeros: new content.
            self.present.insert(self.size, offset);
            self.dirty.insert(self.size, offset);
            self.touch_parts(self.size, offset);
        }
        self.present.insert(offset, end);
        self.dirty.insert(offset, end);
        self.touch_parts(offset, end);
        self.size = self.size.max(end);
        self.changed_now();
    }

    /// `write` of bytes that the part being filled takes whole, at the file's end: done at
    /// once, with no I/O, copying the bytes once (from the caller's buffer, FUSE's, straight
    /// into the part). `false`: not such a write; `write` it.
    ///
    /// No part is finished here: a tail this fills up is sent by the next write or the commit,
    /// as when `write` fills it (`upload_finished_parts` skips the tail's part).
    pub fn write_into_tail(&mut self, offset: u64, data: &[u8]) -> bool {
        let fits = self.tail.as_ref().is_some_and(|t| {
            t.end() == offset && offset == self.size && data.len() <= t.buf.room()
        });
        if self.failed || !fits {
            return false;
        }
        self.tail.as_mut().expect("checked").buf.fill(data);
        self.record(offset, offset + data.len() as u64);
        true
    }

    pub async fn write(&mut self, offset: u64, data: Bytes) -> FsResult<()> {
        self.check()?;
        let end = offset + data.len() as u64;
        if end > max_file_size(self.cfg.part_size) {
            return Err(FsError::TooLarge);
        }
        if self.tail.as_ref().is_some_and(|t| t.end() != offset) {
            self.spill_tail().await?;
        }
        let appending = offset == self.size;
        self.record(offset, end);
        // The bytes are recorded as present: if they cannot be placed, the handle fails.
        if let Err(e) = self.place(offset, data, appending).await {
            self.failed = true;
            return Err(e);
        }
        // Background part uploads are an optimisation: if they cannot start, the commit
        // uploads the parts and reports the error.
        if let Err(e) = self.upload_finished_parts(offset, end).await {
            log::debug!(
                "background part upload of {} deferred to commit: {e}",
                self.key
            );
        }
        Ok(())
    }

    /// Puts written bytes where they belong: an appending writer's into its tail (sending
    /// the parts it fills), everything else into the staging file.
    async fn place(&mut self, offset: u64, mut data: Bytes, appending: bool) -> FsResult<()> {
        let mut pos = offset;
        while appending && !data.is_empty() {
            if self.tail.as_ref().is_some_and(Tail::is_full) {
                // The file goes on past a full part: it is a part of a multipart upload.
                self.finish_tail().await?;
            }
            if self.tail.is_none() && !self.start_tail(pos) {
                let ps = self.cfg.part_size;
                let (start, next) = part_bounds(part_at(pos, ps), ps);
                if start == pos || next >= pos + data.len() as u64 {
                    break;
                }
                // Appending from inside a part (after an fsync, or to an object whose size is
                // not a part boundary): the bytes up to the next part go to the staging file,
                // and a tail may start there.
                let head = data.split_to((next - pos) as usize);
                self.write_file(head, pos).await?;
                pos = next;
                continue;
            }
            let t = self.tail.as_mut().expect("a tail");
            let n = t.buf.fill(&data);
            pos += n as u64;
            data = data.slice(n..);
        }
        if data.is_empty() {
            return Ok(());
        }
        self.write_file(data, pos).await
    }

    async fn write_file(&mut self, data: Bytes, pos: u64) -> FsResult<()> {
        let file = self.file().await?;
        tokio::task::spawn_blocking(move || file.write_all_at(&data, pos))
            .await
            .map_err(|e| FsError::Local(e.to_string()))??;
        Ok(())
    }

    /// Starts a tail at `pos`, the end of the file, if it is the first byte of a part that is
    /// small enough and the mount has the memory to lend.
    fn start_tail(&mut self, pos: u64) -> bool {
        let ps = self.cfg.part_size;
        let part = part_at(pos, ps);
        let (start, end) = part_bounds(part, ps);
        let cap = end - start;
        if start != pos || cap > TAIL_MEMORY / 4 {
            return false;
        }
        let Ok(memory) = self
            .cfg
            .tail_memory
            .clone()
            .try_acquire_many_owned(cap.div_ceil(1024) as u32)
        else {
            return false;
        };
        self.tail = Some(Tail {
            part,
            start,
            buf: AlignedBuf::with_capacity(cap as usize),
            memory,
        });
        true
    }

    /// Starts writing `data` into the staging file at `offset` (`direct_io::write_at`) on the
    /// blocking pool.
    async fn spawn_stage(
        &mut self,
        data: Bytes,
        offset: u64,
    ) -> FsResult<JoinHandle<std::io::Result<()>>> {
        let file = self.file().await?;
        let direct = self.direct.clone();
        Ok(tokio::task::spawn_blocking(move || {
            direct_io::write_at(&file, direct.as_deref(), &data, offset)
        }))
    }

    /// Writes `data` into the staging file at `offset`.
    async fn stage_bytes(&mut self, data: Bytes, offset: u64) -> FsResult<()> {
        self.spawn_stage(data, offset)
            .await?
            .await
            .map_err(|e| FsError::Local(e.to_string()))??;
        Ok(())
    }

    /// Moves the tail into the staging file. Its bytes are recorded as present, so if that
    /// fails the handle fails.
    async fn spill_tail(&mut self) -> FsResult<()> {
        let Some(t) = self.tail.take() else {
            return Ok(());
        };
        let result = self.stage_bytes(t.buf.into_bytes(), t.start).await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Sends a full tail as a part of the multipart upload, from memory, and stores it in the
    /// staging file (where a later read, rewrite or retry at commit finds it). If the upload
    /// cannot start, the commit sends the part.
    async fn finish_tail(&mut self) -> FsResult<()> {
        let t = self.tail.take().expect("a tail");
        let (part, start, memory) = (t.part, t.start, t.memory);
        let data = t.buf.into_bytes();
        // Into the staging file in the background: the writer need not wait for the disk.
        self.staging_write = Some(self.spawn_stage(data.clone(), start).await?);
        let metadata = self.final_metadata(SystemTime::now());
        let key = self.key.clone();
        if let Err(e) = self.ensure_upload(&key, &metadata).await {
            log::debug!("background part upload of {key} deferred to commit: {e}");
            return Ok(());
        }
        let u = self.upload.as_ref().expect("ensured");
        if u.parts.contains_key(&part) {
            // Uploaded before (the file was truncated and written again): commit decides.
            return Ok(());
        }
        // Waiting for a slot holds the writer back, which bounds the parts held in memory.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let (client, id, key) = (self.client.clone(), u.upload_id.clone(), u.key.clone());
        let len = data.len() as u64;
        let task = tokio::spawn(async move {
            let (_slot, _memory) = (slot, memory);
            client
                .upload_part(&key, &id, part + 1, Body::Bytes(data))
                .await
        });
        let generation = self.gens.get(&part).copied().unwrap_or(0);
        self.upload.as_mut().expect("ensured").parts.insert(
            part,
            PartSlot::InFlight {
                generation,
                len,
                task,
            },
        );
        Ok(())
    }

    pub async fn truncate(&mut self, new_size: u64) -> FsResult<()> {
        self.check()?;
        self.spill_tail().await?;
        if new_size > max_file_size(self.cfg.part_size) {
            return Err(FsError::TooLarge);
        }
        if new_size < self.size {
            self.settle_parts_beyond(new_size).await;
        }
        let file = self.file().await?;
        file.set_len(new_size)?;
        if new_size < self.size {
            self.present.remove(new_size, u64::MAX);
            self.dirty.remove(new_size, u64::MAX);
            self.base_valid = self.base_valid.min(new_size);
            self.touch_parts(new_size, new_size + 1);
        } else if new_size > self.size {
            self.present.insert(self.size, new_size);
            self.dirty.insert(self.size, new_size);
            self.touch_parts(self.size, new_size);
        }
        self.size = new_size;
        self.changed_now();
        Ok(())
    }

    /// Lets the uploads in flight of parts that a truncation to `size` cuts finish, and forgets
    /// them: their bytes are going from the staging file, and the commit uploads what the parts
    /// hold then. Not aborted: a request whose body the server already has would still be
    /// stored, possibly after the commit's upload of the same part, whose ETag Complete would
    /// then not match (InvalidPart).
    async fn settle_parts_beyond(&mut self, size: u64) {
        let ps = self.cfg.part_size;
        let Some(u) = self.upload.as_mut() else {
            return;
        };
        let cut: Vec<u32> = u
            .parts
            .iter()
            .filter(|(i, slot)| {
                matches!(slot, PartSlot::InFlight { .. }) && part_bounds(**i, ps).1 > size
            })
            .map(|(i, _)| *i)
            .collect();
        for i in cut {
            if let Some(PartSlot::InFlight { task, .. }) = u.parts.remove(&i) {
                let _ = task.await;
            }
        }
    }

    /// The O_TRUNC of an open that joins a file already open for writing: empties it without
    /// counting as a write (a flush still leaves a lone O_TRUNC to the release).
    pub async fn truncate_at_open(&mut self) -> FsResult<()> {
        let touched = self.touched;
        self.truncate(0).await?;
        self.touched = touched;
        Ok(())
    }

    /// Fetches from the base object whatever of `[start, end)` is not local yet.
    async fn ensure_present(&mut self, start: u64, end: u64, align: bool) -> FsResult<()> {
        let limit = end.min(self.base_valid);
        if start >= limit {
            return Ok(());
        }
        let gaps = self.present.gaps(start, limit);
        if gaps.is_empty() {
            return Ok(());
        }
        let base = self
            .base
            .clone()
            .ok_or(FsError::Local("missing bytes but no base object".into()))?;
        let file = self.file().await?;
        for (mut s, mut e) in gaps {
            if align {
                s = s / FETCH_ALIGN * FETCH_ALIGN;
                e = e
                    .div_ceil(FETCH_ALIGN)
                    .saturating_mul(FETCH_ALIGN)
                    .min(self.base_valid);
            }
            // Only fill what is still missing inside the widened range.
            for (gs, ge) in self.present.gaps(s, e) {
                let mut pos = gs;
                while pos < ge {
                    let chunk_end = (pos + (8 << 20)).min(ge);
                    let data = fetch_range(
                        &*self.client,
                        self.cfg.data_cache.as_deref(),
                        &base.version,
                        pos,
                        chunk_end,
                    )
                        .await
                        .inspect_err(|e| {
                            log::warn!(
                                "{}: reading bytes {pos}..{chunk_end} of the version opened failed: {e}",
                                self.key
                            )
                        })?;
                    let f = file.clone();
                    tokio::task::spawn_blocking(move || f.write_all_at(&data, pos))
                        .await
                        .map_err(|e| FsError::Local(e.to_string()))??;
                    self.present.insert(pos, chunk_end);
                    pos = chunk_end;
                }
            }
        }
        Ok(())
    }

    /// Reads through the handle: local bytes, the old object's bytes fetched on demand.
    pub async fn read(&mut self, offset: u64, len: u64) -> FsResult<Bytes> {
        self.check()?;
        self.spill_tail().await?;
        let end = (offset + len).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        self.ensure_present(offset, end, true).await?;
        let file = self.file().await?;
        let n = (end - offset) as usize;
        let data = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset).map(|_| buf)
        })
        .await
        .map_err(|e| FsError::Local(e.to_string()))??;
        Ok(Bytes::from(data))
    }

    fn needs_multipart(&self) -> bool {
        self.size > self.cfg.part_size
    }

    async fn ensure_upload(&mut self, key: &str, metadata: &ObjectMetadata) -> FsResult<()> {
        if let Some(u) = &self.upload
            && u.key == key
        {
            return Ok(());
        }
        self.abort_upload().await;
        let upload_id = self
            .client
            .create_multipart_upload(key, metadata)
            .await
            .map_err(FsError::Cos)?;
        self.upload = Some(Multipart {
            key: key.to_string(),
            upload_id,
            parts: BTreeMap::new(),
            metadata: metadata.clone(),
        });
        Ok(())
    }

    fn spawn_part_upload(
        &self,
        upload_id: &str,
        key: &str,
        i: u32,
        start: u64,
        end: u64,
    ) -> PartTask {
        let client = self.client.clone();
        let slots = self.slots.clone();
        let file = self
            .file
            .clone()
            .expect("staging file exists for dirty parts");
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore never closed");
            client
                .upload_part(
                    &key,
                    &upload_id,
                    i + 1,
                    Body::File {
                        file,
                        offset: start,
                        len: end - start,
                    },
                )
                .await
        })
    }

    /// Uploads, in the background, parts that a sequential writer has just finished.
    async fn upload_finished_parts(&mut self, offset: u64, end: u64) -> FsResult<()> {
        if !self.needs_multipart() {
            return Ok(());
        }
        let ps = self.cfg.part_size;
        let first = part_at(offset, ps);
        let last_done = part_at(end, ps); // parts before this one end at or before `end`
        let mut ready = Vec::new();
        for i in first..last_done {
            let (s, e) = part_bounds(i, ps);
            if e > self.size || !self.dirty.intersects(s, e) {
                continue;
            }
            if !self.present.contains(s, e) || self.tail.as_ref().is_some_and(|t| t.part == i) {
                continue;
            }
            ready.push((i, s, e));
        }
        if ready.is_empty() {
            return Ok(());
        }
        let metadata = self.final_metadata(SystemTime::now());
        let key = self.key.clone();
        self.ensure_upload(&key, &metadata).await?;
        for (i, s, e) in ready {
            let generation = self.gens.get(&i).copied().unwrap_or(0);
            let u = self.upload.as_ref().expect("ensured");
            if matches!(
                u.parts.get(&i),
                Some(PartSlot::InFlight { .. }) | Some(PartSlot::Done { .. })
            ) {
                // Uploaded before (the writer went back); commit will redo it if needed.
                continue;
            }
            let task = self.spawn_part_upload(&u.upload_id, &u.key, i, s, e);
            self.upload.as_mut().expect("ensured").parts.insert(
                i,
                PartSlot::InFlight {
                    generation,
                    len: e - s,
                    task,
                },
            );
        }
        Ok(())
    }

    /// After a commit (`c`): gives the data cache the bytes of the committed object this handle
    /// holds (in memory, or in the staging file), in the background, so the file just written
    /// is read again without a download.
    pub fn fill_cache(&self, cache: Arc<super::data_cache::DataCache>, c: &Committed) {
        let (key, etag, size) = (self.key.clone(), c.etag.clone(), c.size);
        if let Some(t) = self
            .tail
            .as_ref()
            .filter(|t| t.start == 0 && t.end() == size)
        {
            let data = Bytes::copy_from_slice(t.bytes());
            tokio::task::spawn_blocking(move || cache.put(&key, &etag, size, 0, &data));
            return;
        }
        let Some(file) = self.file.clone() else {
            return;
        };
        let mut ranges = self.present.within(0, size.min(self.size));
        if let Some(t) = &self.tail {
            // What waits in memory is not in the staging file.
            ranges.retain(|&(s, _)| s < t.start);
            for r in ranges.iter_mut() {
                r.1 = r.1.min(t.start);
            }
        }
        tokio::task::spawn_blocking(move || {
            use super::data_cache::BLOCK;
            for (s, e) in ranges {
                let mut pos = s.next_multiple_of(BLOCK);
                while pos < e {
                    let end = (pos + 8 * BLOCK).min(e);
                    let mut buf = vec![0u8; (end - pos) as usize];
                    if file.read_exact_at(&mut buf, pos).is_err() {
                        return;
                    }
                    cache.put(&key, &etag, size, pos, &buf);
                    pos = end;
                }
            }
        });
    }

    /// The user metadata the next commit would store, as of now.
    pub fn metadata_now(&self) -> ObjectMetadata {
        self.final_metadata(SystemTime::now())
    }

    /// The metadata of the object a commit writes: the base's, with attribute changes.
    fn final_metadata(&self, now: SystemTime) -> ObjectMetadata {
        let mut m = self
            .base
            .as_ref()
            .map(|b| b.metadata.clone())
            .unwrap_or_default();
        if self.base.is_none() && m.content_type.is_none() {
            // A new object's type follows its name, as cosfs and s3fs set it, so a bucket
            // served over HTTP opens right in a browser; later writes, renames and metadata
            // copies keep it.
            m.content_type = content_type_of(&self.key);
        }
        let mut attrs = MetaAttrs::parse(&m.user);
        attrs.merge(&self.attrs);
        if self.content_dirty && self.attrs.mtime.is_none() {
            attrs.mtime = Some(now);
            attrs.ctime = Some(now);
        }
        attrs.apply(&mut m.user);
        m
    }

    async fn abort_upload(&mut self) {
        if let Some(u) = self.upload.take() {
            for slot in u.parts.into_values() {
                if let PartSlot::InFlight { task, .. } = slot {
                    task.abort();
                    let _ = task.await;
                }
            }
            if let Err(e) = self
                .client
                .abort_multipart_upload(&u.key, &u.upload_id)
                .await
            {
                log::warn!(
                    "could not abort the multipart upload of {} (run `cosmount cleanup-uploads`): {e}",
                    u.key
                );
            }
        }
    }

    /// Drops the handle's pending work: aborts a multipart upload in progress.
    pub async fn discard(&mut self) {
        self.tail = None;
        self.abort_upload().await;
        self.content_dirty = false;
        self.meta_dirty = false;
    }

    /// Stores the handle's content and attributes as its object. `Ok(None)`: nothing to do.
    pub async fn commit(&mut self) -> FsResult<Option<Committed>> {
        self.check()?;
        // Everything after (the parts sent from the staging file, the data cache filled from
        // it) needs its bytes there.
        self.settle_staging().await?;
        if !self.is_dirty() {
            return Ok(None);
        }
        let key = self.key.clone();
        let key = key.as_str();
        let result = self.commit_inner(key).await;
        match result {
            Ok(c) => {
                self.base = Some(Base {
                    version: Version {
                        key: key.to_string(),
                        etag: c.etag.clone(),
                        size: c.size,
                    },
                    metadata: c.metadata.clone(),
                });
                self.base_valid = c.size;
                self.dirty = RangeSet::new();
                self.gens.clear();
                self.content_dirty = false;
                self.meta_dirty = false;
                self.touched = false;
                self.attrs = MetaAttrs::default();
                self.explicit_times = false;
                Ok(Some(c))
            }
            Err(e) => {
                log::error!("commit of {key} failed; the previous object is unchanged: {e}");
                self.abort_upload().await;
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn commit_inner(&mut self, key: &str) -> FsResult<Committed> {
        let now = SystemTime::now();
        let metadata = self.final_metadata(now);
        if !self.content_dirty {
            // Attributes only: a copy of the object onto itself, no data through this machine.
            let base = self.base.clone().ok_or(FsError::NotFound)?;
            let out = self
                .client
                .copy_object(
                    crate::cos::CopyObject::new(base.version.key.clone(), key.to_string())
                        .replace_metadata(metadata.clone())
                        .source_if_match(base.version.etag.clone()),
                )
                .await
                .map_err(FsError::from_read)?;
            return Ok(Committed {
                etag: out.etag,
                size: base.version.size,
                metadata,
                last_modified: out.last_modified.unwrap_or(now),
            });
        }
        if self.size > MAX_SINGLE_UPLOAD || self.needs_multipart() {
            self.spill_tail().await?;
            return self.commit_multipart(key, metadata, now).await;
        }
        self.abort_upload().await;
        let body = match &self.tail {
            // A file that is all tail goes up from memory.
            Some(t) if t.start == 0 && t.len() as u64 == self.size => {
                Body::Bytes(Bytes::copy_from_slice(t.bytes()))
            }
            _ => {
                self.spill_tail().await?;
                self.ensure_present(0, self.size, false).await?;
                match (&self.file, self.size) {
                    (_, 0) | (None, _) => Body::Empty,
                    (Some(f), n) => Body::File {
                        file: f.clone(),
                        offset: 0,
                        len: n,
                    },
                }
            }
        };
        let out = self
            .client
            .put_object(PutObject::new(key, body).metadata(metadata.clone()))
            .await
            .map_err(FsError::Cos)?;
        Ok(Committed {
            etag: out.etag,
            size: self.size,
            metadata,
            last_modified: out.last_modified.unwrap_or(now),
        })
    }

    async fn commit_multipart(
        &mut self,
        key: &str,
        metadata: ObjectMetadata,
        now: SystemTime,
    ) -> FsResult<Committed> {
        self.ensure_upload(key, &metadata).await?;
        let ps = self.cfg.part_size;
        let count = part_at(self.size - 1, ps) + 1;
        let mut upload = self.upload.take().expect("ensured");
        let result = self.upload_parts(&mut upload, count).await;
        let parts = match result {
            Ok(p) => p,
            Err(e) => {
                self.upload = Some(upload);
                return Err(e);
            }
        };
        let mut out = match self
            .client
            .complete_multipart_upload(key, &upload.upload_id, &parts)
            .await
        {
            Ok(out) => out,
            Err(e) => {
                self.upload = Some(upload);
                return Err(FsError::Cos(e));
            }
        };
        // Complete keeps the metadata of Initiate, which may predate a chmod, chown or
        // utimens made while the file was being written: restate it with a copy onto itself.
        // (The modification time alone is not worth a copy: it is when the upload started.)
        if metadata_changed(&upload.metadata, &metadata, self.explicit_times) {
            out = server_side_copy(
                &*self.client,
                key,
                key,
                self.size,
                Some(metadata.clone()),
                None,
                4,
            )
            .await?;
        }
        Ok(Committed {
            etag: out.etag,
            size: self.size,
            metadata,
            last_modified: out.last_modified.unwrap_or(now),
        })
    }

    /// Makes every part of `[0, size)` current in `upload` and returns the list for Complete.
    async fn upload_parts(
        &mut self,
        upload: &mut Multipart,
        count: u32,
    ) -> FsResult<Vec<CompletedPart>> {
        let ps = self.cfg.part_size;
        let base_key = self.base.as_ref().map(|b| b.version.clone());
        let mut tasks: Vec<(u32, u64, u64, PartTask)> = Vec::new();
        let mut done: BTreeMap<u32, String> = BTreeMap::new();
        // Parts beyond the end are simply left out of Complete; wait for them to settle.
        let beyond: Vec<u32> = upload.parts.range(count..).map(|(i, _)| *i).collect();
        for i in beyond {
            if let Some(PartSlot::InFlight { task, .. }) = upload.parts.remove(&i) {
                let _ = task.await;
            }
        }
        for i in 0..count {
            let (s, e) = part_bounds(i, ps);
            let e = e.min(self.size);
            let generation = self.gens.get(&i).copied().unwrap_or(0);
            let len = e - s;
            match upload.parts.remove(&i) {
                Some(PartSlot::Done {
                    generation: g,
                    len: l,
                    etag,
                }) if g == generation && l == len => {
                    done.insert(i, etag);
                    continue;
                }
                Some(PartSlot::InFlight {
                    generation: g,
                    len: l,
                    task,
                }) => {
                    if g == generation && l == len {
                        tasks.push((i, generation, len, task));
                        continue;
                    }
                    // Written again since: let the old upload settle before replacing it.
                    let _ = task.await;
                }
                _ => {}
            }
            let is_last = i + 1 == count;
            // Unchanged ranges of the old object are copied server-side, unless their bytes
            // are here anyway: uploading them then does not depend on that version still
            // existing (another writer may have replaced it since).
            let clean = !self.dirty.intersects(s, e)
                && e <= self.base_valid
                && !self.present.contains(s, e);
            if clean
                && (len >= MIN_PART_SIZE || is_last)
                && let Some(base) = &base_key
            {
                let client = self.client.clone();
                let slots = self.slots.clone();
                let (key, id, src, etag) = (
                    upload.key.clone(),
                    upload.upload_id.clone(),
                    base.key.clone(),
                    base.etag.clone(),
                );
                let task = tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await.expect("semaphore never closed");
                    client
                        .upload_part_copy(&key, &id, i + 1, &src, Some((s, e)), Some(&etag))
                        .await
                });
                tasks.push((i, generation, len, task));
                continue;
            }
            self.ensure_present(s, e, false).await?;
            self.file().await?;
            let task = self.spawn_part_upload(&upload.upload_id, &upload.key, i, s, e);
            tasks.push((i, generation, len, task));
        }
        let mut first_err = None;
        for (i, generation, len, task) in tasks {
            match task.await {
                Ok(Ok(out)) => {
                    upload.parts.insert(
                        i,
                        PartSlot::Done {
                            generation,
                            len,
                            etag: out.etag.clone(),
                        },
                    );
                    done.insert(i, out.etag);
                }
                Ok(Err(e)) => {
                    log::warn!("{}: part {} failed: {e}", upload.key, i + 1);
                    first_err.get_or_insert(FsError::from_read(e));
                }
                Err(e) => {
                    first_err
                        .get_or_insert(FsError::Local(format!("part upload task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(done
            .into_iter()
            .map(|(i, etag)| CompletedPart {
                part_number: i + 1,
                etag,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_schedule_is_contiguous_and_grows() {
        let ps = 8 << 20;
        assert_eq!(part_bounds(0, ps), (0, ps));
        assert_eq!(part_bounds(999, ps), (999 * ps, 1000 * ps));
        assert_eq!(part_len(1000, ps), 2 * ps);
        for i in 0..MAX_PARTS - 1 {
            let (_, e) = part_bounds(i, ps);
            let (s2, _) = part_bounds(i + 1, ps);
            assert_eq!(e, s2, "part {i}");
            assert!(part_len(i, ps) <= MAX_PART_SIZE);
            assert_eq!(part_at(s2, ps), i + 1);
            assert_eq!(part_at(s2 - 1, ps), i);
        }
        assert!(max_file_size(ps) > 30 << 40, "tens of TiB");
    }
}
