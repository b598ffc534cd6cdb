//! Open descriptors: open, create, read, write, flush, fsync and release. Every descriptor of
//! an inode joins the inode's one `OpenFile` (open_file.rs): writes through any descriptor are
//! read through any other at once, `O_APPEND` writes land at the shared end, a flush of a
//! descriptor that may write (or an fsync of any) commits everyone's bytes so far, and the
//! release of the last descriptor commits what is left. Commits hold the file's state, so they
//! are serialised, and each builds on the version the one before it made.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::attrs::{Attr, Ino, Kind, MetaAttrs};
use super::error::{FsError, FsResult};
use super::meta_cache::{FileStat, Stat};
use super::open_file::{Backing, FileHandle, FileState, OpenFile, Reader};
use super::read::{Prefetcher, Version};
use super::write::{Base, Committed, WriteConfig, WriteHandle};
use super::{Caller, Filesystem, Handle, OpenMode, Opened};

/// The process (thread group) of a thread id, from /proc; `None` when it cannot be told (the
/// thread is gone, or lives in another pid namespace).
fn process_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Where a write through `h` lands: an `O_APPEND` descriptor's at the file's end.
fn write_position(h: &FileHandle, w: &WriteHandle, offset: u64) -> u64 {
    if h.append && offset != w.size() {
        w.size()
    } else {
        offset
    }
}

/// What a write did beyond storing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub len: u32,
    /// An `O_APPEND` write landed at the file's end, elsewhere than the kernel asked: its
    /// idea of the size was old (another mount appended). Its cached pages and attributes of
    /// the file must be dropped.
    pub moved: bool,
    /// The write cleared the file's set-ID bits (see `write`): the kernel's attributes of the
    /// file must be dropped before the writer goes on.
    pub setid_dropped: bool,
}

impl Filesystem {
    pub(super) fn write_config(&self) -> WriteConfig {
        WriteConfig {
            part_size: self.cfg.part_size,
            cache_dir: self.cfg.cache_dir.clone(),
            tail_memory: self.tail_memory.clone(),
            data_cache: self.cfg.data_cache.clone(),
        }
    }

    fn new_writer(
        &self,
        key: String,
        base: Option<Base>,
        truncate: bool,
        attrs: MetaAttrs,
    ) -> WriteHandle {
        self.written_keys.lock().put(key.clone(), ());
        WriteHandle::new(
            self.client.clone(),
            self.write_config(),
            self.upload_slots.clone(),
            key,
            base,
            truncate,
            attrs,
        )
    }

    /// The current object at `key` as a write base (HEAD, for its full metadata and its
    /// current version: close-to-open, so a file another mount closed is what this one builds
    /// on).
    pub(super) async fn base_for(&self, key: &str) -> FsResult<Option<Base>> {
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

    /// Joins the open-file state of `ino` (creating it, `local` for a new file) as one more
    /// descriptor; `leave` undoes it.
    pub(super) fn join(&self, ino: Ino, local: bool) -> Arc<OpenFile> {
        let mut files = self.files.lock();
        let file = files
            .entry(ino)
            .or_insert_with(|| {
                self.inodes.lock().open_handle(ino);
                Arc::new(OpenFile::new(ino, local))
            })
            .clone();
        file.with_view(|v| v.descriptors += 1);
        file
    }

    /// One descriptor of `file` goes. The last one commits what is left (an error can only be
    /// logged: release cannot report to close) and tears the state down, unless a descriptor
    /// joined meanwhile. `st` is the state, locked by the caller.
    async fn leave(
        &self,
        file: &Arc<OpenFile>,
        mut st: tokio::sync::MutexGuard<'_, FileState>,
    ) -> FsResult<()> {
        let last = file.with_view(|v| {
            v.descriptors -= 1;
            v.descriptors == 0
        });
        if !last {
            return Ok(());
        }
        let result = self.commit_state(file, &mut st, false).await;
        if let Err(e) = &result {
            log::error!("closing a file: its last commit failed: {e}");
        }
        let gone = {
            let mut files = self.files.lock();
            let alone = file.with_view(|v| v.descriptors == 0);
            if alone && files.get(&file.ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
                files.remove(&file.ino);
                true
            } else {
                false
            }
        };
        if gone {
            if let Some(w) = st.writer.as_mut() {
                w.discard().await;
            }
            st.writer = None;
            let mut inodes = self.inodes.lock();
            if file.view().local {
                // A failed first commit: the file never existed in COS.
                inodes.detach_ino(file.ino);
            }
            inodes.close_handle(file.ino);
        }
        result
    }

    pub(super) fn file_handle(&self, fh: u64) -> FsResult<Arc<FileHandle>> {
        match self.handles.lock().get(&fh) {
            Some(Handle::File(f)) => Ok(f.clone()),
            _ => Err(FsError::BadHandle),
        }
    }

    /// The open descriptors of one file.
    pub(super) fn handles_of(&self, ino: Ino) -> Vec<Arc<FileHandle>> {
        self.handles
            .lock()
            .values()
            .filter_map(|h| match h {
                Handle::File(f) if f.ino() == ino => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether a program still writes `ino` through a descriptor it has not closed: a change
    /// made by path then rides along with that program's commit.
    pub(super) fn written_by_a_program(&self, ino: Ino) -> bool {
        self.handles_of(ino)
            .iter()
            .any(|h| h.writable && !h.flushed())
    }

    /// Opens a file. Returns the handle and whether the kernel may keep its cached pages.
    pub async fn open(&self, ino: Ino, mode: OpenMode) -> FsResult<Opened> {
        let writable = mode.writable();
        if writable {
            self.check_writable()?;
        }
        let kind = self.kind_of(ino)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let key = self.key_of(ino)?;
        let file = self.join(ino, false);
        let mut st = if writable {
            file.lock_changeable().await
        } else {
            file.state.lock().await
        };
        let opened = match self.open_state(&file, &mut st, &key, &mode).await {
            Ok(()) if !writable && st.passthrough_of_older_version() => {
                // The object changed under descriptors that read the old version by
                // passthrough. Their inode leaves the name (they keep reading it, as after a
                // local `mv` over the file), and ESTALE makes the kernel look the name up
                // again: the lookup gives a new inode, opened on the new version.
                self.inodes.lock().detach_ino(ino);
                Err(FsError::Stale)
            }
            Ok(()) => st.open_io(!writable, |st| self.backing(st)),
            Err(e) => Err(e),
        };
        let io = match opened {
            Ok(io) => io,
            Err(e) => {
                let _ = self.leave(&file, st).await;
                return Err(e);
            }
        };
        file.sync_view(&st);
        let keep_cache = {
            let mut inodes = self.inodes.lock();
            let etag = st.version.as_ref().map(|v| v.etag.clone());
            let clean = st.writer.is_none();
            match inodes.get_mut(ino) {
                Some(node) => {
                    let keep = clean && etag.is_some() && node.cached_etag == etag;
                    node.cached_etag = if clean { etag } else { None };
                    keep
                }
                None => false,
            }
        };
        if mode.exec {
            st.executing += 1;
        }
        let reader = Reader::pinned(&st);
        drop(st);
        if !writable && self.cfg.files_ahead {
            self.read_ahead_after(&key);
        }
        let handle = FileHandle::new(file, &mode, reader, io.clone());
        let fh = self.new_handle(Handle::File(Arc::new(handle)));
        Ok(Opened { fh, keep_cache, io })
    }

    /// A backing file for passthrough reads of the state's version: the data cache's copy,
    /// when it holds every byte of it and the kernel takes passthrough.
    fn backing(&self, st: &FileState) -> Option<Backing> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let (cache, v) = (self.cfg.data_cache.as_ref()?, st.version.as_ref()?);
        if self.written_keys.lock().contains(&v.key) {
            return None;
        }
        // A small object's check is quick; a big one's reads the file once, from local disk.
        let file = tokio::task::block_in_place(|| cache.complete_file(&v.key, &v.etag, v.size))?;
        Some(Backing::new(file, v.etag.clone()))
    }

    /// What an open needs of the state: the writer for a descriptor that may write, the
    /// current version for one that reads.
    async fn open_state(
        &self,
        file: &OpenFile,
        st: &mut FileState,
        key: &str,
        mode: &OpenMode,
    ) -> FsResult<()> {
        if mode.writable() {
            let w = self.ensure_writer(file, st, key, mode.truncate).await?;
            if mode.truncate && mode.drops_setid {
                w.drop_setid_bits();
            }
            return Ok(());
        }
        if st.writer.is_some() || file.view().local {
            return Ok(());
        }
        let version = match self.resolve(key).await? {
            Some(Stat::File(f)) => Version {
                key: key.to_string(),
                etag: f.etag,
                size: f.size,
            },
            Some(Stat::Dir(_)) => return Err(FsError::IsDir),
            None => return Err(FsError::NotFound),
        };
        // A descriptor opened now reads the object as it is now; those opened before stay
        // pinned to what they opened.
        st.version = Some(version);
        Ok(())
    }

    /// The state's writer, made if there is none: based on the object's current version
    /// (HEAD: close-to-open, so a file another mount closed is what this one builds on), or
    /// empty for a file not stored yet. `truncate`: the content starts empty (O_TRUNC).
    pub(super) async fn ensure_writer<'a>(
        &self,
        file: &OpenFile,
        st: &'a mut FileState,
        key: &str,
        truncate: bool,
    ) -> FsResult<&'a mut WriteHandle> {
        st.check_changeable()?;
        if let Some(w) = st.writer.as_mut() {
            if truncate {
                w.truncate_at_open().await?;
            }
        } else {
            let base = if file.view().local {
                None
            } else {
                match self.base_for(key).await? {
                    Some(b) => Some(b),
                    None => {
                        // Gone although the kernel still had a name for it: ESTALE makes the
                        // kernel look the name up again (and create the file anew for
                        // O_CREAT), and that lookup must not be answered from the cache.
                        self.unlearn(key);
                        return Err(FsError::Stale);
                    }
                }
            };
            if let Some(b) = &base {
                // Descriptors opened from now on read this version; those pinned to an older
                // one stay pinned (it was another client's change).
                st.version = Some(b.version.clone());
            }
            st.writer =
                Some(self.new_writer(key.to_string(), base, truncate, MetaAttrs::default()));
        }
        Ok(st.writer.as_mut().expect("set above"))
    }

    pub async fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        open: OpenMode,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        if self.ensure_absent(parent, name, &key).await.is_err() {
            if open.exclusive {
                return Err(FsError::Exists);
            }
            let attr = self.lookup(parent, name).await?;
            let opened = self
                .open(
                    attr.ino,
                    OpenMode {
                        write: true,
                        ..open
                    },
                )
                .await?;
            return Ok((self.getattr(attr.ino).await?, opened));
        }
        let attrs = self.entry_attrs(parent, Kind::File, mode, caller).await?;
        // An inode still open under this name is of an object that is gone (the name is
        // free): its descriptors keep it, the new file gets an inode of its own.
        let old = self.inodes.lock().child(parent, name);
        if old.is_some_and(|i| self.files.lock().contains_key(&i)) {
            self.inodes.lock().detach(parent, name);
        }
        let ino = self.inodes.lock().lookup(parent, name, Kind::File);
        self.unlearn(&key);
        let file = self.join(ino, true);
        let (reader, io) = {
            let mut st = file.state.lock().await;
            st.writer = Some(self.new_writer(key.clone(), None, true, attrs));
            file.sync_view(&st);
            (Reader::pinned(&st), st.open_io(false, |_| None)?)
        };
        self.touch_parent(&key);
        let mode = OpenMode {
            write: true,
            ..open
        };
        let handle = FileHandle::new(file, &mode, reader, io.clone());
        let fh = self.new_handle(Handle::File(Arc::new(handle)));
        let stat = self.local_stat(ino).expect("local");
        let opened = Opened {
            fh,
            keep_cache: false,
            io,
        };
        Ok((self.attr_of(ino, &stat), opened))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        log::trace!("read fh {fh}: {size} bytes at {offset}");
        let h = self.file_handle(fh)?;
        let (version, commits) = {
            let mut st = h.file.state.lock().await;
            if let Some(w) = st.writer.as_mut()
                && w.has_local_content()
            {
                return w.read(offset, size as u64).await;
            }
            (st.version.clone(), st.commits)
        };
        let mut r = h.reader.lock().await;
        if r.commits != commits {
            // This mount committed the file since: its bytes are the new version's.
            r.version = version;
            r.commits = commits;
            r.prefetcher = None;
        }
        let mut result = self.read_pinned(&mut r, offset, size).await;
        if matches!(result, Err(FsError::Stale)) && !r.served {
            // Replaced by another client before this descriptor returned a byte: it reads the
            // object as it is now, as if opened now.
            if let Some(v) = self.repin(&h.file, &mut r).await {
                log::debug!(
                    "{} changed before its first read; reading the new version",
                    v.key
                );
                result = self.read_pinned(&mut r, offset, size).await;
            }
        }
        match &result {
            Ok(_) => r.served = true,
            Err(FsError::SseKey) => log::error!(
                "cannot read {}: it is SSE-C encrypted and the mount's key is missing or different",
                r.version.as_ref().map(|v| v.key.as_str()).unwrap_or("?")
            ),
            Err(FsError::Stale) => log::warn!(
                "{} changed while open; reads of this descriptor fail with ESTALE",
                r.version.as_ref().map(|v| v.key.as_str()).unwrap_or("?")
            ),
            Err(FsError::Archived) => log::error!(
                "cannot read {}: it is in COS archive storage (ARCHIVE or DEEP_ARCHIVE) and not \
                 restored; restore it first (COS console, coscmd restore, or the SDK's \
                 restore_object), then read it again",
                r.version.as_ref().map(|v| v.key.as_str()).unwrap_or("?")
            ),
            Err(_) => {}
        }
        result
    }

    /// After a read-only open of `key`: when it continues a run of opens in listing order,
    /// the next small files of the directory are fetched whole in the background (`ahead.rs`),
    /// except those the data cache holds.
    fn read_ahead_after(&self, key: &str) {
        let (prefix, name) = Self::split_key(key);
        for f in self.ahead.opened(&prefix, &name) {
            let key = format!("{prefix}{}", f.name);
            if (self.cfg.data_cache.as_ref()).is_some_and(|c| c.holds_all(&key, &f.etag, f.size)) {
                continue;
            }
            let (client, cache) = (self.client.clone(), self.cfg.data_cache.clone());
            let task = tokio::spawn(fetch_whole(client, cache, key.clone()));
            self.ahead
                .started(key, f.size, async move { task.await.ok().flatten() });
        }
    }

    async fn read_pinned(&self, r: &mut Reader, offset: u64, size: u32) -> FsResult<Bytes> {
        let ahead = match &r.version {
            Some(v) if r.prefetcher.is_none() => self.ahead.body(&v.key, &v.etag).await,
            _ => None,
        };
        if let Some(body) = ahead {
            let start = (offset as usize).min(body.len());
            let end = (start + size as usize).min(body.len());
            return Ok(body.slice(start..end));
        }
        if r.prefetcher.is_none() {
            let Some(version) = r.version.clone() else {
                return Ok(Bytes::new());
            };
            r.prefetcher = Some(
                Prefetcher::new(
                    self.client.clone(),
                    version,
                    self.cfg.prefetch.clone(),
                    self.prefetch_memory.clone(),
                )
                .with_cache(self.cfg.data_cache.clone()),
            );
        }
        r.prefetcher
            .as_mut()
            .expect("set above")
            .read(offset, size as u64)
            .await
    }

    /// Pins a descriptor that has read nothing yet to the object's current version.
    async fn repin(&self, file: &OpenFile, r: &mut Reader) -> Option<Version> {
        let old = r.version.clone()?;
        let info = self.client.head_object(&old.key).await.ok()?;
        let new = Version {
            key: old.key.clone(),
            etag: info.etag.clone(),
            size: info.size,
        };
        if new == old {
            return None;
        }
        self.cache.insert(
            &old.key,
            Stat::File(FileStat {
                size: info.size,
                etag: info.etag,
                last_modified: info.last_modified,
                meta: Some(MetaAttrs::parse(&info.user)),
            }),
        );
        let mut st = file.state.lock().await;
        if st.writer.is_none() && st.version.as_ref() == Some(&old) {
            st.version = Some(new.clone());
        }
        r.version = Some(new.clone());
        r.prefetcher = None;
        Some(new)
    }

    /// Writes `data` at `offset` (at the end for O_APPEND). `drop_setid`: the writer may not
    /// keep the file's set-ID bits (the kernel's FUSE_WRITE_KILL_SUIDGID, sent with writes it
    /// does not pass through its page cache), so they are cleared.
    pub async fn write(
        &self,
        fh: u64,
        offset: u64,
        data: Bytes,
        drop_setid: bool,
    ) -> FsResult<Written> {
        let h = self.file_handle(fh)?;
        h.set_flushed(false);
        let len = data.len() as u32;
        let mut st = h.file.state.lock().await;
        let w = st.writer.as_mut().ok_or(FsError::BadHandle)?;
        let setid_dropped = drop_setid && w.drop_setid_bits();
        let at = write_position(&h, w, offset);
        w.write(at, data).await?;
        h.file.sync_view(&st);
        Ok(Written {
            len,
            moved: at != offset,
            setid_dropped,
        })
    }

    /// `write`, done at once from the caller's buffer when it can be without waiting: the
    /// file's state is free and the bytes go whole into the part being filled
    /// (`WriteHandle::write_into_tail`). `None`: call `write` (with a copy of the bytes).
    pub fn write_now(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        drop_setid: bool,
    ) -> Option<Written> {
        let h = self.file_handle(fh).ok()?;
        let mut st = h.file.state.try_lock().ok()?;
        let w = st.writer.as_mut()?;
        let at = write_position(&h, w, offset);
        if !w.write_into_tail(at, data) {
            return None;
        }
        let setid_dropped = drop_setid && w.drop_setid_bits();
        h.set_flushed(false);
        h.file.sync_view(&st);
        Some(Written {
            len: data.len() as u32,
            moved: at != offset,
            setid_dropped,
        })
    }

    /// Commits the state's pending writes and attributes; its error is the caller's
    /// (flush/fsync → EIO). `at_flush`: a close, which leaves a lone O_TRUNC to the release
    /// (see `WriteHandle::worth_committing_at_flush`). A file removed while open is never
    /// committed.
    pub(super) async fn commit_state(
        &self,
        file: &OpenFile,
        st: &mut FileState,
        at_flush: bool,
    ) -> FsResult<()> {
        let Some(w) = st.writer.as_mut() else {
            return Ok(());
        };
        if at_flush && !w.worth_committing_at_flush() && !w.has_failed() {
            return Ok(());
        }
        let Ok(key) = self.key_of(file.ino) else {
            // Removed (unlinked, or replaced by a rename) while open.
            return Ok(());
        };
        if w.key() != key {
            w.set_key(key.clone());
        }
        let committed = w.commit().await;
        let committed = match committed {
            Ok(c) => c,
            Err(e) => {
                file.sync_view(st);
                return Err(e);
            }
        };
        if let Some(c) = committed {
            if let (Some(cache), Some(w)) = (&self.cfg.data_cache, st.writer.as_ref()) {
                w.fill_cache(cache.clone(), &c);
            }
            st.committed(Version {
                key: key.clone(),
                etag: c.etag.clone(),
                size: c.size,
            });
            self.after_commit(file, &key, &c);
        }
        file.sync_view(st);
        Ok(())
    }

    /// What every part of the mount learns from a commit.
    pub(super) fn after_commit(&self, file: &OpenFile, key: &str, c: &Committed) {
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
        file.with_view(|v| v.local = false);
        if let Some(node) = self.inodes.lock().get_mut(file.ino) {
            node.cached_etag = None;
        }
    }

    /// Commits the open files of `ino` and everything under it (before a rename copies them).
    pub(super) async fn commit_files_under(&self, ino: Ino) -> FsResult<()> {
        let files: Vec<Arc<OpenFile>> = self.files.lock().values().cloned().collect();
        for file in files {
            if self.is_under(file.ino, ino) {
                let mut st = file.state.lock().await;
                self.commit_state(&file, &mut st, false).await?;
            }
        }
        Ok(())
    }

    /// A close of one descriptor (from thread `caller`). It commits when the descriptor may
    /// write and the closing process is the one that opened it: a child that inherited the
    /// descriptor (fork, then exec or exit) closes its copy while the parent still writes, and
    /// committing then would publish a partial file; such closes leave the commit to the
    /// opener's close, or to release. Closing a read-only descriptor commits nothing either: it
    /// changed nothing, and another program may be halfway through writing the file.
    pub async fn flush(&self, fh: u64, caller: Option<u32>) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let opener = h.opener;
        // The same thread: the same process, without asking /proc (the common case).
        if opener != caller
            && let (Some(opener), Some(closer)) =
                (opener.and_then(process_of), caller.and_then(process_of))
            && opener != closer
        {
            // Not the program's own close: the descriptor is still in use (not `flushed`).
            log::debug!(
                "flush of handle {fh} by process {closer}, opened by {opener}: not committing"
            );
            return Ok(());
        }
        h.set_flushed(true);
        if !h.writable {
            return Ok(());
        }
        let mut st = h.file.state.lock().await;
        self.commit_state(&h.file, &mut st, true).await
    }

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let mut st = h.file.state.lock().await;
        self.commit_state(&h.file, &mut st, false).await
    }

    /// Closes a descriptor; the last one of a file commits what is still dirty.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let h = match self.handles.lock().remove(&fh) {
            Some(Handle::File(h)) => h,
            _ => return Ok(()),
        };
        let mut st = h.file.state.lock().await;
        st.close_io(&h.io);
        if h.exec {
            st.executing -= 1;
        }
        h.file.wake_released();
        self.leave(&h.file, st).await
    }

    /// Runs `op` on the state of `ino` as a descriptor of its own for the moment (a change by
    /// path: truncate), so it shares the state with every open descriptor; like an open for
    /// writing, it first lets releases on their way arrive (`OpenFile::lock_changeable`).
    pub(super) async fn with_state<T>(
        &self,
        ino: Ino,
        op: impl AsyncFnOnce(&OpenFile, &mut FileState) -> FsResult<T>,
    ) -> FsResult<T> {
        let file = self.join(ino, false);
        let mut st = file.lock_changeable().await;
        let result = op(&file, &mut st).await;
        file.sync_view(&st);
        let left = self.leave(&file, st).await;
        let out = result?;
        left?;
        Ok(out)
    }
}

/// A whole object, fetched ahead of its open (`Filesystem::read_ahead_after`); the data cache
/// gets its bytes too. `None` if the GET failed: the open then asks as usual.
async fn fetch_whole(
    client: Arc<dyn crate::cos::ObjectClient>,
    cache: Option<Arc<super::data_cache::DataCache>>,
    key: String,
) -> Option<Arc<super::ahead::Fetched>> {
    let asked = std::time::Instant::now();
    // The listing may be old: the range bounds what a file grown since costs.
    let req = crate::cos::GetObject::new(&key).range(0, super::ahead::MAX_FILE);
    let (info, body) = match client.get_object_bytes(req).await {
        Ok(got) => got,
        Err(e) => {
            log::debug!("reading {key} ahead failed: {e}");
            return None;
        }
    };
    if body.len() as u64 != info.size {
        return None;
    }
    if let Some(c) = &cache {
        c.put_later(&key, &info.etag, info.size, 0, body.clone(), Vec::new());
    }
    Some(Arc::new(super::ahead::Fetched {
        stat: super::lookup::stat_of(&info),
        etag: info.etag,
        asked,
        body,
    }))
}
