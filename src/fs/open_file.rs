//! The open-file state: one per inode that has open descriptors, shared by all of them (style.md
//! habit 11, as the kernel keeps `struct inode` apart from `struct file`). It owns the file's
//! content while it is open: the version clean reads are pinned to, and once any descriptor may
//! write, the one `WriteHandle` (staging file, in-memory tail, dirty ranges, pending metadata)
//! that every descriptor writes into, reads from and commits. A descriptor (`FileHandle`) keeps
//! only what is its own: its flags, the process that opened it, whether its program closed it,
//! and its sequential-read state.
//!
//! The state lives in `Filesystem::files` from the first open of an inode to the release of its
//! last descriptor; `join` and `leave` (in handles.rs) keep the count and the table in step, so
//! an open racing with the last release either joins the state before it is torn down or finds
//! it gone and starts a new one from what COS holds after that release's commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::OpenMode;
use super::attrs::{Ino, MetaAttrs};
use super::data_cache::Pinned;
use super::error::{FsError, FsResult};
use super::read::{Prefetcher, Version};
use super::write::WriteHandle;

pub struct OpenFile {
    pub ino: Ino,
    /// The content; every read, write, truncation and commit of the file goes through it, so
    /// commits of one file are serialised.
    pub state: tokio::sync::Mutex<FileState>,
    /// What `stat` and lookups show while the file is open, readable without waiting for a
    /// commit in progress; `sync_view` keeps it in step with the state.
    view: parking_lot::Mutex<View>,
    /// Woken by every release of a descriptor (see `lock_changeable`).
    released: tokio::sync::Notify,
}

/// How long a change that finds its file busy waits for releases on their way (`lock_changeable`).
const BUSY_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

pub struct FileState {
    /// The version that reads of clean content are pinned to: the object when the file was
    /// opened (or reopened while no descriptor wrote it), then each commit of this mount.
    pub version: Option<Version>,
    /// Commits this mount made of the file while it was open: a descriptor pinned before one
    /// reads the new version (its bytes are what it would have read through the writer).
    pub commits: u64,
    /// The file's content once a descriptor may write (or the file was removed while open).
    pub writer: Option<WriteHandle>,
    /// How the kernel does the I/O of the open descriptors (see `Io`).
    pub io: IoModes,
    /// Descriptors the kernel opened to execute the file (`execve`); each is held until its
    /// program exits.
    pub executing: u32,
}

/// How the kernel does a descriptor's I/O. The kernel keeps one mode per inode: while any
/// descriptor of it is open through the page cache, none may be opened by passthrough, and
/// while some are open by passthrough, every open must be passthrough to the same backing
/// file (it fails the open with EIO otherwise).
#[derive(Clone)]
pub enum Io {
    /// Through FUSE and the page cache.
    Cached,
    /// By the kernel from a file of the data cache, without FUSE.
    Passthrough(Arc<Backing>),
}

/// The file passthrough descriptors read: a complete, checked copy of one version in the
/// data cache, pinned there while it is open.
pub struct Backing {
    pub file: Pinned,
    pub etag: String,
    /// The FUSE layer's registration of the file with the kernel (made at the first open,
    /// shared by every passthrough open of the inode, dropped after the last one's release).
    pub registration: parking_lot::Mutex<Option<Box<dyn std::any::Any + Send + Sync>>>,
    /// The kernel refused the registration: the descriptors given this file are served
    /// through FUSE, and it constrains no other open.
    refused: AtomicBool,
}

impl Backing {
    pub fn new(file: Pinned, etag: String) -> Self {
        Backing {
            file,
            etag,
            registration: Default::default(),
            refused: AtomicBool::new(false),
        }
    }

    pub fn refuse(&self) {
        self.refused.store(true, Ordering::Release);
    }
}

/// The descriptors of an inode by I/O mode.
#[derive(Default)]
pub struct IoModes {
    cached: u32,
    passthrough: Option<(Arc<Backing>, u32)>,
}

impl IoModes {
    /// Descriptors are open by passthrough, as the kernel knows (a refused registration
    /// leaves them served through FUSE, which constrains nothing).
    fn passthrough_active(&self) -> bool {
        self.passthrough
            .as_ref()
            .is_some_and(|(b, _)| !b.refused.load(Ordering::Acquire))
    }
}

impl FileState {
    /// The I/O mode of a descriptor being opened, counted until `close_io`. `read_only`: it
    /// cannot write; `offer` gives a backing file for the current version, if the data cache
    /// holds all of it and the file may be read by passthrough.
    ///
    /// While descriptors are open by passthrough, the kernel takes only passthrough opens, of
    /// the same backing file: a read-only open shares it (and reads the version it holds), and
    /// an open for writing is refused with ETXTBSY, as writing a running program is, since the
    /// kernel would write the cache's file without us.
    pub fn open_io(
        &mut self,
        read_only: bool,
        offer: impl FnOnce(&FileState) -> Option<Backing>,
    ) -> FsResult<Io> {
        if self.io.passthrough_active() {
            if !read_only {
                return Err(FsError::Busy);
            }
            let (b, n) = self.io.passthrough.as_mut().expect("active");
            *n += 1;
            return Ok(Io::Passthrough(b.clone()));
        }
        if read_only
            && self.writer.is_none()
            && self.io.cached == 0
            && self.io.passthrough.is_none()
            && let Some(b) = offer(self)
        {
            let b = Arc::new(b);
            self.io.passthrough = Some((b.clone(), 1));
            return Ok(Io::Passthrough(b));
        }
        self.io.cached += 1;
        Ok(Io::Cached)
    }

    /// Descriptors read an older version by passthrough than the one a read-only open would
    /// read now (another client replaced the object). The kernel ties the inode to their
    /// backing file, so a new open cannot read the new version on this inode (see `open`).
    pub fn passthrough_of_older_version(&self) -> bool {
        self.io.passthrough_active()
            && self.io.passthrough.as_ref().map(|(b, _)| b.etag.as_str())
                != self.version.as_ref().map(|v| v.etag.as_str())
    }

    /// Whether the content may change now: not while descriptors read it by passthrough
    /// (ETXTBSY; see `open_io`), nor while it is a running program's (ETXTBSY, as on a local
    /// file system). The kernel refuses writable opens of a running program itself, but it
    /// checks an `O_RDONLY|O_TRUNC` open only after this file system has truncated it in
    /// OPEN (atomic O_TRUNC): that check is this one.
    pub fn check_changeable(&self) -> FsResult<()> {
        if self.io.passthrough_active() || self.executing > 0 {
            return Err(FsError::Busy);
        }
        Ok(())
    }

    /// A descriptor of mode `io` is released.
    pub fn close_io(&mut self, io: &Io) {
        match io {
            Io::Cached => self.io.cached -= 1,
            Io::Passthrough(_) => {
                if let Some((_, n)) = &mut self.io.passthrough {
                    *n -= 1;
                    if *n == 0 {
                        self.io.passthrough = None;
                    }
                }
            }
        }
    }
}

/// The open file as `stat` sees it.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Open descriptors, plus operations holding the state for a moment (a truncate by path).
    pub descriptors: u32,
    /// The size of the content while a writer holds it.
    pub size: Option<u64>,
    /// Attributes set or changed and not committed yet.
    pub pending: MetaAttrs,
    /// Created on this mount and not stored in COS yet (its first commit is pending).
    pub local: bool,
}

impl OpenFile {
    pub fn new(ino: Ino, local: bool) -> Self {
        OpenFile {
            ino,
            state: tokio::sync::Mutex::new(FileState {
                version: None,
                commits: 0,
                writer: None,
                io: IoModes::default(),
                executing: 0,
            }),
            view: parking_lot::Mutex::new(View {
                local,
                ..View::default()
            }),
            released: tokio::sync::Notify::new(),
        }
    }

    /// The state, once its content may change (`FileState::check_changeable`) or after
    /// `BUSY_GRACE`. The kernel sends a descriptor's RELEASE after its `close` has returned
    /// (and a program's after it has exited), so a program that closes a file, or runs it, and
    /// at once writes it would otherwise find that descriptor still counted: ETXTBSY for no
    /// reason. Descriptors still open keep it busy.
    pub async fn lock_changeable(&self) -> tokio::sync::MutexGuard<'_, FileState> {
        let deadline = tokio::time::Instant::now() + BUSY_GRACE;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let st = self.state.lock().await;
            if st.check_changeable().is_ok() {
                return st;
            }
            drop(st);
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.state.lock().await;
            }
        }
    }

    /// A descriptor of this file was released (its state already says so).
    pub fn wake_released(&self) {
        self.released.notify_waiters();
    }

    pub fn view(&self) -> View {
        self.view.lock().clone()
    }

    /// Changes the view under its lock.
    pub fn with_view<T>(&self, f: impl FnOnce(&mut View) -> T) -> T {
        f(&mut self.view.lock())
    }

    /// Updates the view after the state changed (a write, truncation, attribute change or
    /// commit): the writer's size and pending attributes, or none once it is clean.
    pub fn sync_view(&self, st: &FileState) {
        let mut v = self.view.lock();
        match &st.writer {
            Some(w) if w.is_dirty() || w.has_local_content() => {
                v.size = Some(w.size());
                v.pending = w.pending_attrs().clone();
            }
            _ => {
                v.size = None;
                v.pending = MetaAttrs::default();
            }
        }
    }
}

impl FileState {
    /// Records an own commit: clean reads of every descriptor now come from `version`.
    pub fn committed(&mut self, version: Version) {
        self.version = Some(version);
        self.commits += 1;
    }
}

/// One open descriptor (one FUSE file handle): a view of its inode's `OpenFile`.
pub struct FileHandle {
    pub file: Arc<OpenFile>,
    /// Opened for writing (O_WRONLY or O_RDWR, or with O_TRUNC).
    pub writable: bool,
    /// Opened with O_APPEND: every write lands at the file's end.
    pub append: bool,
    /// How the kernel does its I/O.
    pub io: Io,
    /// Opened by the kernel to execute the file (counted in `FileState::executing`).
    pub exec: bool,
    /// The thread that opened the descriptor, when known (see `Filesystem::flush`).
    pub opener: Option<u32>,
    /// Its program closed it (flush) and nothing was written or truncated through it since:
    /// maybe only the release is still to come.
    flushed: AtomicBool,
    pub reader: tokio::sync::Mutex<Reader>,
}

impl FileHandle {
    /// A descriptor opened with `mode`.
    pub fn new(file: Arc<OpenFile>, mode: &OpenMode, reader: Reader, io: Io) -> Self {
        FileHandle {
            file,
            writable: mode.writable(),
            append: mode.append,
            io,
            exec: mode.exec,
            opener: mode.caller,
            flushed: AtomicBool::new(false),
            reader: tokio::sync::Mutex::new(reader),
        }
    }

    pub fn ino(&self) -> Ino {
        self.file.ino
    }

    pub fn flushed(&self) -> bool {
        self.flushed.load(Ordering::Acquire)
    }

    pub fn set_flushed(&self, v: bool) {
        self.flushed.store(v, Ordering::Release);
    }
}

/// A descriptor's reads of clean content: the version it is pinned to and its prefetcher.
pub struct Reader {
    pub version: Option<Version>,
    /// `FileState::commits` when `version` was taken.
    pub commits: u64,
    pub prefetcher: Option<Prefetcher>,
    /// Bytes were returned through this descriptor: from then on a changed object is an error
    /// (ESTALE), never a silent switch to other bytes.
    pub served: bool,
}

impl Reader {
    pub fn pinned(st: &FileState) -> Self {
        Reader {
            version: st.version.clone(),
            commits: st.commits,
            prefetcher: None,
            served: false,
        }
    }
}
