//! The fuser adapter: the only module that knows fuser. Each callback decodes its arguments
//! and runs the work: at once when it needs nothing to wait for, else as a task on the tokio
//! runtime that replies when done, so a slow COS request never holds up other requests.
//! Errors become errnos through `FsError::errno` only.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::Written;
use crate::fs::attrs::{Attr, Kind};
use crate::fs::error::FsError;
use crate::fs::open_file::Io;
use crate::fs::operations::Operations;
use crate::fs::xattr::XattrReply;
use crate::fs::{Caller, Filesystem, OpenMode, SetAttr, SetTime};

/// Largest write the kernel may send in one request (the kernel caps it at 256 pages).
const MAX_WRITE: u32 = 1 << 20;
/// Requests the kernel keeps in flight to us (readahead, async reads).
const MAX_BACKGROUND: u16 = 64;
/// Entries fetched per readdir call before the reply buffer decides how many fit.
const READDIR_BATCH: usize = 512;

/// The adapter of a mount: of one bucket (`Filesystem`) or of every bucket (`Service`).
pub struct FuseAdapter<F: Operations = Filesystem> {
    fs: Arc<F>,
    rt: Handle,
    /// Sends invalidations to the kernel; set once the session exists (`notifier`).
    notifier: Arc<OnceLock<fuser::Notifier>>,
    /// The callbacks' work still running as tasks. The kernel sends a close's release after
    /// close(2) has returned, and an unmount may come right after: the session's end waits
    /// for them, so a commit or an abort that a release began is never cut off.
    tasks: tokio_util::task::TaskTracker,
}

impl<F: Operations> FuseAdapter<F> {
    pub fn new(fs: Arc<F>, rt: Handle) -> Self {
        FuseAdapter {
            fs,
            rt,
            notifier: Arc::new(OnceLock::new()),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Where `main` puts the session's notifier once the session is made.
    pub fn notifier(&self) -> Arc<OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Runs a callback's work and its reply: at once on fuser's thread if it finishes without
    /// waiting (a lookup or getattr answered from the cache, a create, a write into memory),
    /// else as a task on the runtime, which polls it again. Calls that need no request then
    /// cost no hand-over between threads, and anything that waits still never blocks fuser.
    fn run(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut work = Box::pin(work);
        let _runtime = self.rt.enter();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // A panic is contained as it is in a task: the work and its reply are dropped (fuser
        // then answers EIO) and fuser's thread goes on.
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.as_mut().poll(&mut cx)));
        if let Ok(std::task::Poll::Pending) = polled {
            self.rt.spawn(self.tasks.track_future(work));
        }
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn reply_xattr(reply: ReplyXattr, r: Result<XattrReply, FsError>) {
    match r {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answers a call that makes or finds a name (lookup, mkdir, mknod, symlink).
fn reply_entry(reply: ReplyEntry, ttl: &Duration, r: Result<Attr, FsError>) {
    match r {
        Ok(a) => reply.entry(ttl, &(&a).into(), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

impl From<&Attr> for FileAttr {
    fn from(a: &Attr) -> Self {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            crtime: a.mtime,
            kind: file_type(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: a.rdev,
            blksize: 1 << 20,
            flags: 0,
        }
    }
}

/// Whether a descriptor bypasses the kernel's page cache (`FOPEN_DIRECT_IO`): with
/// `--direct-io`, and always for one that only writes. Its pages would serve no read: it cannot
/// read or be mapped, and the next open of a file changed since drops the file's cached pages.
/// Copying each write into new page-cache pages is what costs most in a write through the
/// mount: `dd` writing 1 GiB spent 1.07-2.52 s of system time that way on these VMs, 0.15-0.21 s
/// direct, and the write ran at 325-483 MiB/s instead of 652-659 (the emulator, 2026-12-06).
/// The kernel keeps other descriptors' cached pages right: a direct write drops the pages of
/// the range it writes.
fn direct_io(config: &crate::fs::FsConfig, mode: &OpenMode) -> bool {
    config.direct_io || (mode.write && !mode.read)
}

/// The caller of a create-type request. The mode comes unmasked (`FUSE_DONT_MASK`): the core
/// applies the umask, unless the directory has a default ACL.
fn caller(req: &Request, umask: u32) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        umask,
    }
}

fn name_str(name: &OsStr) -> Result<String, FsError> {
    name.to_str().map(str::to_string).ok_or(FsError::Invalid(
        "file names must be UTF-8 to become object keys",
    ))
}

fn time_of(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
        TimeOrNow::Now => SetTime::Now,
    }
}

/// The kernel's `__FMODE_EXEC`, which it puts in the flags of the open that `execve` makes (no
/// flag a program can pass has this bit).
const FMODE_EXEC: i32 = 0x20;

fn open_mode(flags: i32, req: &Request) -> OpenMode {
    let acc = flags & libc::O_ACCMODE;
    OpenMode {
        read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
        exclusive: flags & libc::O_EXCL != 0,
        append: flags & libc::O_APPEND != 0,
        exec: flags & FMODE_EXEC != 0,
        caller: Some(req.pid()),
        drops_setid: req.uid() != 0,
    }
}

impl<F: Operations> fuser::Filesystem for FuseAdapter<F> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_background(MAX_BACKGROUND);
        let mut caps = vec![
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // The umask is the core's to apply (a default ACL replaces it).
            InitFlags::FUSE_DONT_MASK,
        ];
        if self.fs.config().xattrs {
            // The kernel enforces POSIX ACLs, stored as extended attributes, and keeps them in
            // step with the mode (chmod, setfacl).
            caps.push(InitFlags::FUSE_POSIX_ACL);
        }
        // A descriptor that could not be passthrough is direct I/O; an mmap of it still works.
        caps.push(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        for cap in caps {
            if config.add_capabilities(cap).is_err() {
                log::debug!("kernel lacks capability {cap:?}");
            }
        }
        if self.fs.wants_passthrough() {
            // Depth 2: the cache directory may itself be on a stacked file system (overlayfs).
            let taken = config.set_max_stack_depth(2).is_ok()
                && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok();
            if taken {
                self.fs.set_passthrough(true);
            } else {
                log::info!(
                    "the kernel has no FUSE passthrough (Linux 6.9+): cached files are read through cosmount"
                );
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        let (fs, tasks) = (self.fs.clone(), self.tasks.clone());
        self.rt.block_on(async move {
            tasks.close();
            while tokio::time::timeout(Duration::from_secs(10), tasks.wait())
                .await
                .is_err()
            {
                log::info!(
                    "unmount: waiting for {} requests still in progress",
                    tasks.len()
                );
            }
            fs.shutdown().await
        });
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        self.run(async move {
            let r = async { fs.lookup(parent.0, &name?).await }.await;
            reply_entry(reply, &fs.ttl(), r);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&fs.ttl(), &(&a).into()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = self.fs.clone();
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(time_of),
            atime: atime.map(time_of),
        };
        self.run(async move {
            match fs.setattr(ino.0, fh.map(|f| f.0), change).await {
                Ok(a) => reply.attr(&fs.ttl(), &(&a).into()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        let caller = caller(req, umask);
        self.run(async move {
            let r = async { fs.mkdir(parent.0, &name?, mode, caller).await }.await;
            reply_entry(reply, &fs.ttl(), r);
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        let caller = caller(req, umask);
        self.run(async move {
            let r = async { fs.mknod(parent.0, &name?, mode, rdev, caller).await }.await;
            reply_entry(reply, &fs.ttl(), r);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        self.run(async move {
            match async { fs.unlink(parent.0, &name?).await }.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        self.run(async move {
            match async { fs.rmdir(parent.0, &name?).await }.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (fs, name) = (self.fs.clone(), name_str(link_name));
        let target = name_str(target.as_os_str());
        let caller = caller(req, 0);
        self.run(async move {
            let r = async { fs.symlink(parent.0, &name?, &target?, caller).await }.await;
            reply_entry(reply, &fs.ttl(), r);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let (name, newname) = (name_str(name), name_str(newname));
        self.run(async move {
            let r = async {
                if flags.contains(RenameFlags::RENAME_EXCHANGE)
                    || flags.contains(RenameFlags::RENAME_WHITEOUT)
                {
                    return Err(FsError::NotSupported("RENAME_EXCHANGE / RENAME_WHITEOUT"));
                }
                fs.rename(
                    parent.0,
                    &name?,
                    newparent.0,
                    &newname?,
                    flags.contains(RenameFlags::RENAME_NOREPLACE),
                )
                .await
            }
            .await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, &self.fs.ttl(), self.fs.link());
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let mode = open_mode(flags.0, req);
        self.run(async move {
            match fs.open(ino.0, mode).await {
                Ok(o) => {
                    // A close of a read-only descriptor has nothing to commit: the kernel need
                    // not ask (one request less per `cat`).
                    let noflush = if mode.writable() {
                        FopenFlags::empty()
                    } else {
                        FopenFlags::FOPEN_NOFLUSH
                    };
                    let f = if direct_io(fs.config(), &mode) {
                        noflush | FopenFlags::FOPEN_DIRECT_IO
                    } else if o.keep_cache {
                        noflush | FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        noflush
                    };
                    match &o.io {
                        Io::Cached => reply.opened(FileHandle(o.fh), f),
                        Io::Passthrough(b) => {
                            let mut reg = b.registration.lock();
                            if reg.is_none() {
                                match reply.open_backing(b.file.file()) {
                                    Ok(id) => *reg = Some(Box::new(id)),
                                    Err(e) => {
                                        // No CAP_SYS_ADMIN, most likely: the descriptor is
                                        // served through FUSE (with direct I/O, which the
                                        // kernel takes beside any other open of the inode).
                                        log::warn!(
                                            "FUSE passthrough refused ({e}): cached files are read through cosmount"
                                        );
                                        fs.set_passthrough(false);
                                        b.refuse();
                                    }
                                }
                            }
                            // The kernel takes no flag but NOFLUSH beside passthrough.
                            match reg.as_ref().and_then(|r| r.downcast_ref::<BackingId>()) {
                                Some(id) => reply.opened_passthrough(FileHandle(o.fh), noflush, id),
                                None => reply.opened(
                                    FileHandle(o.fh),
                                    noflush | FopenFlags::FOPEN_DIRECT_IO,
                                ),
                            }
                        }
                    }
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        let caller = caller(req, umask);
        let mode_flags = open_mode(flags, req);
        self.run(async move {
            let r = async { fs.create(parent.0, &name?, mode, mode_flags, caller).await }.await;
            match r {
                Ok((a, o)) => reply.created(
                    &fs.ttl(),
                    &(&a).into(),
                    Generation(0),
                    FileHandle(o.fh),
                    // A writable descriptor is never passthrough.
                    if direct_io(fs.config(), &mode_flags) {
                        FopenFlags::FOPEN_DIRECT_IO
                    } else {
                        FopenFlags::empty()
                    },
                ),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        // Always a task: replies with data are copied out on the runtime's threads, in
        // parallel, while fuser's thread goes on reading requests.
        let received = std::time::Instant::now();
        self.rt.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
            log::trace!(
                "read fh {}: {size} bytes at {offset} answered after {:.2} ms",
                fh.0,
                received.elapsed().as_secs_f64() * 1000.0
            );
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let notifier = self.notifier.clone();
        let answer = move |reply: ReplyWrite, w: Written| {
            if w.setid_dropped
                && let Some(n) = notifier.get()
            {
                // Before the answer, so that no stat or exec after this write sees the old
                // mode. Attributes only (a negative offset): no page, so no lock the kernel
                // holds for this write, is waited for.
                if let Err(e) = n.inval_inode(ino, -1, 0) {
                    log::debug!("invalidating the attributes of inode {}: {e}", ino.0);
                }
            }
            reply.written(w.len);
            if w.moved
                && let Some(n) = notifier.get().cloned()
            {
                // The kernel put the bytes at its idea of the end in its page cache: drop its
                // pages and attributes, once it has our answer (it holds the pages locked
                // until then).
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = n.inval_inode(ino, 0, 0) {
                        log::debug!("invalidating inode {}: {e}", ino.0);
                    }
                });
            }
        };
        // Most writes of a file being written from start to end go into the part being filled
        // at once, from fuser's buffer; the others get a copy of their bytes to take along.
        // The kernel clears set-ID bits itself for writes through its page cache, and asks us
        // to for the others (direct I/O) when the writer lacks CAP_FSETID.
        let drop_setid = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        if let Some(w) = self.fs.write_now(fh.0, offset, data, drop_setid) {
            let _runtime = self.rt.enter();
            answer(reply, w);
            return;
        }
        let fs = self.fs.clone();
        let data = bytes::Bytes::copy_from_slice(data);
        self.run(async move {
            match fs.write(fh.0, offset, data, drop_setid).await {
                Ok(w) => answer(reply, w),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let caller = Some(req.pid());
        self.run(async move {
            match fs.flush(fh.0, caller).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            // release cannot report to close(); the error was logged by the core.
            let _ = fs.release(fh.0).await;
            reply.ok();
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.fallocate(fh.0, offset, length, mode).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            match fs.readdir(fh.0, offset, READDIR_BATCH).await {
                Ok(entries) => {
                    for e in entries {
                        if reply.add(INodeNo(e.ino), e.next_offset, file_type(e.kind), &e.name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = self.fs.clone();
        self.run(async move {
            let ttl = fs.ttl();
            match fs.readdir(fh.0, offset, READDIR_BATCH).await {
                Ok(entries) => {
                    for e in entries {
                        let (attr, counted) = match &e.entry {
                            Some(entry) => (fs.remember(ino.0, entry), true),
                            None => (
                                Attr {
                                    ino: e.ino,
                                    kind: Kind::Dir,
                                    size: 0,
                                    perm: 0o755,
                                    uid: 0,
                                    gid: 0,
                                    mtime: SystemTime::UNIX_EPOCH,
                                    ctime: SystemTime::UNIX_EPOCH,
                                    atime: SystemTime::UNIX_EPOCH,
                                    rdev: 0,
                                    nlink: 2,
                                },
                                false,
                            ),
                        };
                        if reply.add(
                            INodeNo(attr.ino),
                            e.next_offset,
                            &e.name,
                            &ttl,
                            &(&attr).into(),
                            Generation(0),
                        ) {
                            if counted {
                                fs.forget(attr.ino, 1);
                            }
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        self.run(async move {
            let r = async { fs.getxattr(ino.0, &name?, size).await }.await;
            reply_xattr(reply, r);
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.run(async move {
            let r = fs.listxattr(ino.0, size).await;
            reply_xattr(reply, r);
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (fs, name, value) = (self.fs.clone(), name_str(name), value.to_vec());
        let create = flags & libc::XATTR_CREATE != 0;
        let replace = flags & libc::XATTR_REPLACE != 0;
        self.run(async move {
            let r = async { fs.setxattr(ino.0, &name?, &value, create, replace).await }.await;
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name_str(name));
        self.run(async move {
            match async { fs.removexattr(ino.0, &name?).await }.await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }
}

/// How long a SIGTERM'd mount waits for busy files before unmounting lazily.
pub const UNMOUNT_GRACE: Duration = Duration::from_secs(5);
