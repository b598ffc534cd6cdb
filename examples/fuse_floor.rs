//! `fuse_floor [--read] SOURCE MOUNTPOINT`: the least a FUSE server can do to serve a flat
//! directory of files by passthrough, as a floor for `scripts/bench.sh cache`. It lists SOURCE
//! once at start and keeps every name and attribute in memory; a lookup, getattr or readdirplus
//! is answered from there, and an open opens the file in SOURCE and hands it to the kernel
//! (FUSE passthrough, no flush at close). Whatever cosmount costs beyond this server on the
//! same files is cosmount's; what this one costs beyond the local directory is the price of
//! FUSE itself on this host. With `--read`, opens hand out no backing file and every read comes
//! through FUSE, served by `pread` (the floor of a server without passthrough). Read-only;
//! runs until unmounted.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};
use parking_lot::Mutex;

const TTL: Duration = Duration::from_secs(3600);

struct Entry {
    name: String,
    attr: FileAttr,
}

struct Floor {
    source: PathBuf,
    root: FileAttr,
    /// Inode `i + 2` is `files[i]`.
    files: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// The backing file of each open descriptor, given back to the kernel at release.
    open: Mutex<HashMap<u64, BackingId>>,
    next_fh: Mutex<u64>,
    /// `--read`: no passthrough; reads come through FUSE and are served by `pread`.
    by_read: bool,
    /// With `--read`, the open descriptors' files.
    files_open: Mutex<HashMap<u64, File>>,
}

fn attr_of(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    let time = |s: i64| UNIX_EPOCH + Duration::from_secs(s.max(0) as u64);
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime()),
        mtime: time(m.mtime()),
        ctime: time(m.ctime()),
        crtime: time(m.mtime()),
        kind: if m.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: (m.mode() & 0o7777) as u16,
        nlink: 1,
        uid: m.uid(),
        gid: m.gid(),
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

impl Floor {
    fn load(source: PathBuf, by_read: bool) -> std::io::Result<Floor> {
        let root = attr_of(1, &std::fs::metadata(&source)?);
        let mut files = Vec::new();
        for e in std::fs::read_dir(&source)? {
            let e = e?;
            let m = e.metadata()?;
            if !m.is_file() {
                continue;
            }
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            files.push(Entry {
                attr: attr_of(files.len() as u64 + 2, &m),
                name,
            });
        }
        let by_name = (files.iter().enumerate())
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        Ok(Floor {
            source,
            root,
            files,
            by_name,
            open: Mutex::new(HashMap::new()),
            next_fh: Mutex::new(0),
            by_read,
            files_open: Mutex::new(HashMap::new()),
        })
    }

    fn file(&self, ino: INodeNo) -> Option<&Entry> {
        ino.0
            .checked_sub(2)
            .and_then(|i| self.files.get(i as usize))
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        config
            .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
            .map_err(|_| std::io::Error::other("the kernel does not offer FUSE passthrough"))?;
        let _ = config.set_max_stack_depth(2);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match (parent == INodeNo::ROOT)
            .then(|| name.to_str().and_then(|n| self.by_name.get(n)))
            .flatten()
        {
            Some(&i) => reply.entry(&TTL, &self.files[i].attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root);
        }
        match self.file(ino) {
            Some(f) => reply.attr(&TTL, &f.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(f) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let file = match File::open(self.source.join(&f.name)) {
            Ok(file) => file,
            Err(e) => return reply.error(Errno::from(e)),
        };
        let fh = {
            let mut n = self.next_fh.lock();
            *n += 1;
            *n
        };
        if self.by_read {
            self.files_open.lock().insert(fh, file);
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH);
        }
        let id = match reply.open_backing(&file) {
            Ok(id) => id,
            Err(e) => return reply.error(Errno::from(e)),
        };
        reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &id);
        self.open.lock().insert(fh, id);
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
        self.open.lock().remove(&fh.0);
        self.files_open.lock().remove(&fh.0);
        reply.ok();
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
        use std::os::unix::fs::FileExt;
        let files = self.files_open.lock();
        let Some(file) = files.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        match file.read_at(&mut buf, offset) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(Errno::from(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let dots = [(".", &self.root), ("..", &self.root)];
        let all = dots
            .into_iter()
            .chain(self.files.iter().map(|f| (f.name.as_str(), &f.attr)));
        for (i, (name, attr)) in all.enumerate().skip(offset as usize) {
            if reply.add(attr.ino, i as u64 + 1, name, &TTL, attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let by_read = args.first().is_some_and(|a| a == "--read");
    if by_read {
        args.remove(0);
    }
    let [source, mountpoint] = args.as_slice() else {
        eprintln!("usage: fuse_floor [--read] SOURCE MOUNTPOINT");
        std::process::exit(2);
    };
    let floor = match Floor::load(PathBuf::from(source), by_read) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fuse_floor: cannot list {source}: {e}");
            std::process::exit(1);
        }
    };
    let mut cfg = fuser::Config::default();
    cfg.mount_options.extend([
        MountOption::FSName("fuse_floor".into()),
        MountOption::RO,
        MountOption::DefaultPermissions,
    ]);
    if let Err(e) = fuser::mount(floor, mountpoint, &cfg) {
        eprintln!("fuse_floor: cannot mount on {mountpoint}: {e}");
        std::process::exit(1);
    }
}
