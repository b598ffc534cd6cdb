//! A differential reference-model test: random sequences of file-system operations are
//! applied, with the same code (std::fs and std::os::unix), to a fresh directory of a real
//! kernel FUSE mount over the emulator and to a fresh directory on the local disk, which is
//! the reference model. After every step the results (values and errnos) must be equal; at
//! the end every handle is closed and the two trees must be equal byte for byte, and equal to
//! the tree that a second, cache-less mount of the same bucket sees (that is, to what is in
//! COS). The only differences tolerated are listed in one place, `ALLOWED_DIFFERENCES`, each
//! with its reason; what the generator avoids on purpose is in `MODEL_CHOICES`.
//!
//!   cargo test --release --test model                          # 32 cases per test
//!   COSMOUNT_MODEL_CASES=2000 cargo test --release --test model # thousands
//!   COSMOUNT_MODEL_SEED=<hex, 64 digits> ...                   # replay a run's seed
//!   COSMOUNT_MODEL_STRICT=1 ...        # do not step around KNOWN_BUGS
//!   COSMOUNT_MODEL_TRACE=1 ...         # print every case's steps and results
//!
//! A failure is shrunk by proptest to a minimal sequence, printed as Rust code (paste it into
//! a `replay` regression test below) with the step-by-step trace of both sides. Two tests run
//! the model: on a mount with `--metadata-ttl indefinite` and on one without any metadata
//! cache; both with `--part-size 1M`, so that writes of up to 3 MiB cross parts.

mod common;

use std::cell::RefCell;
use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::mount::Mount;
use common::{BUCKET, TestEmulator, md5_hex, pattern, runtime};
use cosmount::cos::{ListObjects, ObjectClient};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

// ---------------------------------------------------------------------------------------------
// What may differ, and what is not generated: the one place to read before trusting a result.
// ---------------------------------------------------------------------------------------------

/// Differences between cosmount and a local file system that the comparison tolerates. Each
/// entry is applied in `normalise` (values) or simply not collected (fields never compared);
/// anything not listed here must match exactly, errnos included.
pub const ALLOWED_DIFFERENCES: &[(&str, &str)] = &[
    (
        "st_size of directories",
        "a directory is a `dir/` marker object (or a key prefix); cosmount reports 0, ext4 \
         reports its block size. File and symlink sizes are compared.",
    ),
    (
        "st_nlink, st_ino, st_dev, st_blocks, st_blksize",
        "COS has no inodes or link counts (cosmount reports 1 for files, 2 for directories \
         without counting subdirectories, inode numbers of its own), stores no sparse files, \
         and advertises 1 MiB blocks. Not collected.",
    ),
    (
        "atime, mtime, ctime",
        "the two sides run at different instants; tests/shared_files.rs \
         (`times_are_kept_and_move_as_posix_says`) and pjdfstest check the times. Not \
         collected.",
    ),
    (
        "hard links",
        "not supported by cosmount (EPERM, docs/SEMANTICS.md, Not supported): never generated.",
    ),
];

/// How the generated sequences are run so that they stay within the documented semantics
/// (docs/SEMANTICS.md) while testing as much as possible. The harness (`Harness::plan`)
/// inserts the extra steps named here, on both sides, and compares their results too.
pub const MODEL_CHOICES: &[(&str, &str)] = &[
    (
        "several descriptors and processes on one file",
        "up to three descriptors are open at once, on any files, several on one file too, \
         write-only or read-write, some with O_APPEND; reads through any descriptor, or \
         through a new one (`read_path`), must see every byte any other wrote, as locally \
         (SEMANTICS: one file, one state). Child processes write files too (`child_write`, \
         `child_append`: dd conv=notrunc and `cat >>`), while the test's own descriptors on \
         them stay open.",
    ),
    (
        "files removed while open",
        "unlink of a file with open descriptors, or rename of another file onto it, is \
         generated and must succeed; the descriptors go on reading and writing the removed \
         file exactly as locally, and nothing of it is stored (SEMANTICS: 'A file removed \
         while open'). The final trees check that nothing was resurrected.",
    ),
    (
        "renames of open files",
        "rename of a file (or of a directory holding files) with open handles is generated: \
         SEMANTICS says such a file is committed first; its handles must go on working under \
         the new name, exactly as locally.",
    ),
    (
        "names and symlink targets",
        "a small name space in one case directory (a, b, c, d, d/e, d/f, d/e/g, x, x/y, \
         x/y/z); symlink targets are relative names without `..` and never absolute, so they \
         resolve to the same place on both sides. Files are created 0644, directories 0755 \
         (umask applies on both sides); chmod uses a fixed list of modes.",
    ),
];

/// BUGS of cosmount found by this test and not fixed yet (none now); not allowed
/// differences. The convention: each entry names the bug and its `regression_*` test, which
/// asserts the correct behaviour and fails until the fix; while an entry is here, the random
/// test may step around the bug (in `Harness::plan`, naming the entry) so that it can go on
/// finding others. Remove the entry and its step-around with the fix, and move it to
/// `FIXED_BUGS`.
pub const KNOWN_BUGS: &[(&str, &str)] = &[];

fn known_bug(name: &str) -> bool {
    KNOWN_BUGS.iter().any(|b| b.0 == name)
}

/// Bugs this test found, all fixed since; their `regression_*` tests stay.
pub const FIXED_BUGS: &[&str] = &[
    "truncate(2)/chmod(2) by path lost once the writer had started a child process (the \
     child's FLUSH marked the handle closed)",
    "a rename of a file open for writing: the next commit read the old key (ENOENT, then \
     EIO, the writes lost)",
    "truncate(2)/chmod(2) by path applied to a busy write handle of ANOTHER file",
    "rename(2) right after close(2): EBADF while the release of the file's handle ran",
    "`: > f; echo x >> f`: ESTALE from close (data lost) or `xontent`",
    "ftruncate of an open file that was unlinked: ESTALE",
    "chmod of a file being written in parts: Complete kept the mode given at Initiate",
    "readdir without a metadata cache typed symlinks as regular files",
    "stat without a metadata cache showed the committed mode, not a chmod riding with a \
     writer",
    "`: > f` then truncate(2)/chmod(2)/unlink(2) at once: the release's commit undid them \
     (f empty, old mode in COS, an unlinked f back)",
    "a new open file renamed over another, then unlinked: the replaced object came back",
];

/// Applied to both sides' results before they are compared (see `ALLOWED_DIFFERENCES`).
fn normalise(r: &mut Res) {
    if let Ok(Out::Attr(a)) = r {
        a.normalise();
    }
    if let Ok(Out::Tree(t)) = r {
        for (_, a, _) in t.iter_mut() {
            a.normalise();
        }
    }
}

impl Attr {
    fn normalise(&mut self) {
        if self.kind == 'd' {
            self.size = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations and their generators.
// ---------------------------------------------------------------------------------------------

const MIB: u64 = 1 << 20;
/// Handles kept open at once (by index).
const SLOTS: usize = 3;
const PATHS: &[&str] = &[
    "a", "b", "c", "d", "x", "d/e", "d/f", "x/y", "x/y/z", "d/e/g",
];
const TARGETS: &[&str] = &["a", "b", "d", "e", "y", "nowhere"];
const MODES: &[u32] = &[0o600, 0o644, 0o640, 0o700, 0o755, 0o777, 0o444, 0o4755];

/// A mode printed in octal, so that failing sequences read (and paste) well.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mode(0o{:o})", self.0)
    }
}

#[derive(Clone, Debug)]
pub enum Op {
    /// open(O_CREAT|O_WRONLY|O_TRUNC, 0644) and close.
    Create(&'static str),
    /// Opens a handle into `slot` (closing what was there first): write-only or read-write.
    Open {
        slot: usize,
        path: &'static str,
        rw: bool,
        trunc: bool,
        create: bool,
        append: bool,
    },
    /// pwrite of `len` bytes of pattern `seed` at `off` (O_APPEND handles append). In this and
    /// the other handle operations, `slot` counts among the open handles (modulo their
    /// number), so that they rarely miss; with none open they are skipped.
    Write {
        slot: usize,
        off: u64,
        len: usize,
        seed: u64,
    },
    /// pread through a pooled handle.
    Read {
        slot: usize,
        off: u64,
        len: usize,
    },
    /// open(O_RDONLY), pread, close.
    ReadPath {
        path: &'static str,
        off: u64,
        len: usize,
    },
    /// ftruncate of a handle.
    SetLen {
        slot: usize,
        len: u64,
    },
    /// truncate(2) of a path.
    Truncate {
        path: &'static str,
        len: u64,
    },
    Fsync(usize),
    /// close(2), reporting its error (the commit's).
    Close(usize),
    Rename(&'static str, &'static str),
    /// renameat2(RENAME_NOREPLACE).
    RenameNoReplace(&'static str, &'static str),
    /// open(O_CREAT|O_EXCL|O_WRONLY, 0644) and close.
    CreateNew(&'static str),
    Unlink(&'static str),
    Mkdir(&'static str),
    Rmdir(&'static str),
    Chmod(&'static str, Mode),
    Symlink {
        target: &'static str,
        path: &'static str,
    },
    Readlink(&'static str),
    /// stat (follow) or lstat: type, size, mode & 0o7777, uid, gid.
    Stat {
        path: &'static str,
        follow: bool,
    },
    /// Sorted names and types.
    ReadDir(&'static str),
    /// A child process (dd conv=notrunc) writes `len` bytes of pattern `seed` at `off` of a
    /// file (created if missing), through a descriptor of its own.
    ChildWrite {
        path: &'static str,
        off: u64,
        len: usize,
        seed: u64,
    },
    /// A child process appends `len` bytes of pattern `seed` to a file (`cat >> path`).
    ChildAppend {
        path: &'static str,
        len: usize,
        seed: u64,
    },
    /// Runs a child process (`true`): its exec closes the test's inherited descriptors, which
    /// the kernel reports to the file system as a FLUSH of each open file from another process,
    /// as a shell or any program that spawns others does.
    Spawn,
    /// Unmounts the mount under test and mounts it again (every handle closed first): what
    /// follows starts from what is in COS, with cold caches.
    Remount,
}

use Op::*;

/// Any name; top-level ones (whose parent always exists) more often.
fn path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => proptest::sample::select(&PATHS[..5]),
        2 => proptest::sample::select(PATHS),
    ]
}

/// Names for mkdir: mostly those that other names live under.
fn mkdir_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => proptest::sample::select(&["d", "x", "d/e", "x/y"][..]),
        1 => proptest::sample::select(PATHS),
    ]
}

fn dir_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), path()]
}

fn slot() -> impl Strategy<Value = usize> {
    0..SLOTS
}

/// Offsets: small, around the 1 MiB and 2 MiB part boundaries, anywhere in 3 MiB.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..8192,
        2 => (MIB - 8192)..(MIB + 8192),
        1 => (2 * MIB - 8192)..(2 * MIB + 8192),
        2 => 0u64..(3 * MIB),
    ]
}

/// Lengths of writes and reads: mostly small, sometimes over a part, up to 3 MiB.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..9000,
        2 => 0usize..(MIB as usize + 4096),
        1 => (MIB as usize)..(3 * MIB as usize),
    ]
}

/// Names for operations on files: mostly top-level files, which need no directory first.
fn file_path() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => proptest::sample::select(&["a", "b", "c"][..]),
        3 => proptest::sample::select(PATHS),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => file_path().prop_map(Create),
        7 => (slot(), file_path(), any::<bool>(), prop::bool::weighted(0.2),
              prop::bool::weighted(0.8), prop::bool::weighted(0.15))
            .prop_map(|(slot, path, rw, trunc, create, append)| Open { slot, path, rw, trunc, create, append }),
        8 => (slot(), offset(), length(), 0u64..1000)
            .prop_map(|(slot, off, len, seed)| Write { slot, off, len, seed }),
        3 => (slot(), offset(), length()).prop_map(|(slot, off, len)| Read { slot, off, len }),
        3 => (file_path(), offset(), length()).prop_map(|(path, off, len)| ReadPath { path, off, len }),
        2 => (slot(), offset()).prop_map(|(slot, len)| SetLen { slot, len }),
        2 => (file_path(), offset()).prop_map(|(path, len)| Truncate { path, len }),
        2 => slot().prop_map(Fsync),
        2 => slot().prop_map(Close),
        4 => (path(), path()).prop_map(|(a, b)| Rename(a, b)),
        1 => (path(), path()).prop_map(|(a, b)| RenameNoReplace(a, b)),
        1 => file_path().prop_map(CreateNew),
        2 => file_path().prop_map(Unlink),
        4 => mkdir_path().prop_map(Mkdir),
        2 => mkdir_path().prop_map(Rmdir),
        2 => (path(), proptest::sample::select(MODES)).prop_map(|(p, m)| Chmod(p, Mode(m))),
        2 => (proptest::sample::select(TARGETS), path())
            .prop_map(|(target, path)| Symlink { target, path }),
        1 => path().prop_map(Readlink),
        3 => (path(), any::<bool>()).prop_map(|(path, follow)| Stat { path, follow }),
        2 => dir_path().prop_map(ReadDir),
        1 => Just(Remount),
        1 => Just(Spawn),
        2 => (file_path(), offset(), length(), 0u64..1000)
            .prop_map(|(path, off, len, seed)| ChildWrite { path, off, len, seed }),
        2 => (file_path(), length(), 0u64..1000)
            .prop_map(|(path, len, seed)| ChildAppend { path, len, seed }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    // From 1 (not 10) so that shrinking can reach the shortest failing sequence.
    proptest::collection::vec(op(), 1..=60)
}

// ---------------------------------------------------------------------------------------------
// Results.
// ---------------------------------------------------------------------------------------------

/// What a stat shows that must match (after `normalise`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attr {
    /// 'f' file, 'd' directory, 'l' symlink, '?' other.
    kind: char,
    size: Option<u64>,
    mode: String,
    uid: u32,
    gid: u32,
}

fn attr_of(m: &std::fs::Metadata) -> Attr {
    let ft = m.file_type();
    Attr {
        kind: kind_char(ft),
        size: Some(m.len()),
        mode: format!("0o{:o}", m.mode() & 0o7777),
        uid: m.uid(),
        gid: m.gid(),
    }
}

fn kind_char(ft: std::fs::FileType) -> char {
    if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else {
        '?'
    }
}

/// Bytes, shown as length and MD5 (and compared in full).
#[derive(Clone, PartialEq, Eq)]
pub struct Data(Vec<u8>);

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes md5 {}", self.0.len(), md5_hex(&self.0))
    }
}

/// A tree entry: relative path, attributes, content (file bytes or symlink target).
type TreeEntry = (String, Attr, Option<Data>);

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Out {
    Unit,
    Data(Data),
    Attr(Attr),
    Names(Vec<(String, char)>),
    Target(String),
    Tree(Vec<TreeEntry>),
}

/// A result: a value or an errno (`io::Error::raw_os_error`).
type Res = Result<Out, i32>;

fn errno(e: io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn show(r: &Res) -> String {
    match r {
        Ok(o) => format!("{o:?}"),
        Err(e) => format!("Err({})", io::Error::from_raw_os_error(*e)),
    }
}

/// Where two byte strings first differ, for a readable failure.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "first differing byte at offset {i} (local {:#04x}, mount {:#04x})",
            a[i], b[i]
        ),
        None => format!(
            "equal over the first {} bytes; lengths {} vs {}",
            a.len().min(b.len()),
            a.len(),
            b.len()
        ),
    }
}

fn describe_difference(l: &Res, m: &Res) -> String {
    match (l, m) {
        (Ok(Out::Data(a)), Ok(Out::Data(b))) => first_difference(&a.0, &b.0),
        (Ok(Out::Tree(a)), Ok(Out::Tree(b))) => {
            let mut out = String::new();
            let names_a: Vec<&String> = a.iter().map(|e| &e.0).collect();
            let names_b: Vec<&String> = b.iter().map(|e| &e.0).collect();
            if names_a != names_b {
                out.push_str(&format!("paths differ: {names_a:?} vs {names_b:?}; "));
            }
            for ea in a {
                if let Some(eb) = b.iter().find(|e| e.0 == ea.0)
                    && ea != eb
                {
                    out.push_str(&format!(
                        "{}: {:?} vs {:?}",
                        ea.0,
                        (&ea.1, &ea.2),
                        (&eb.1, &eb.2)
                    ));
                    if let (Some(x), Some(y)) = (&ea.2, &eb.2) {
                        out.push_str(&format!(" ({})", first_difference(&x.0, &y.0)));
                    }
                    out.push_str("; ");
                }
            }
            out
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// One side: a root directory and its pool of handles. Both sides run exactly this code.
// ---------------------------------------------------------------------------------------------

struct Side {
    root: PathBuf,
    handles: Vec<Option<File>>,
}

fn close_fd(f: File) -> Result<(), i32> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just released by its `File`, so it is closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    }
}

/// `echo content > f; : > f`: a file with content, then an open with O_TRUNC alone and a
/// close (such a descriptor is committed at release, after close(2) has returned).
fn write_then_empty_by_o_trunc(f: &Path) {
    std::fs::write(f, b"content").unwrap();
    close_fd(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(f)
            .unwrap(),
    )
    .unwrap();
}

/// Fails listing every wrong result a regression test collected (`context`: what was
/// expected, or how many tries there were).
fn assert_none_wrong(wrong: &[String], context: &str) {
    assert!(
        wrong.is_empty(),
        "{} wrong{}:\n{}",
        wrong.len(),
        if context.is_empty() {
            String::new()
        } else {
            format!(" ({context})")
        },
        wrong.join("\n")
    );
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

/// Runs `cmd` in bash with `input` on its standard input; its errno-like result is the
/// command's failure message's errno, compared as EIO (the exit status of a failed child).
fn run_child(input: &[u8], cmd: &str) -> Res {
    use std::io::Write as _;
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(errno)?;
    let mut stdin = child.stdin.take().expect("piped");
    // The child may fail before reading everything (no such directory): that is its result.
    let _ = stdin.write_all(input);
    drop(stdin);
    let status = child.wait().map_err(errno)?;
    if status.success() {
        Ok(Out::Unit)
    } else {
        Err(libc::EIO)
    }
}

fn read_at_most(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

impl Side {
    fn new(root: PathBuf) -> Self {
        Side {
            root,
            handles: (0..SLOTS).map(|_| None).collect(),
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn handle(&self, slot: usize) -> Result<&File, i32> {
        self.handles[slot].as_ref().ok_or(libc::EBADF)
    }

    fn apply(&mut self, op: &Op) -> Res {
        let unit = |r: io::Result<()>| r.map(|_| Out::Unit).map_err(errno);
        match *op {
            Create(path) => {
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o644)
                    .open(self.p(path))
                    .map_err(errno)?;
                close_fd(f).map(|_| Out::Unit)
            }
            Open {
                slot,
                path,
                rw,
                trunc,
                create,
                append,
            } => {
                assert!(self.handles[slot].is_none(), "the harness closes it first");
                let f = OpenOptions::new()
                    .read(rw)
                    .write(true)
                    // O_APPEND by hand: std refuses append with truncate.
                    .custom_flags(if append { libc::O_APPEND } else { 0 })
                    .truncate(trunc)
                    .create(create)
                    .mode(0o644)
                    .open(self.p(path))
                    .map_err(errno)?;
                self.handles[slot] = Some(f);
                Ok(Out::Unit)
            }
            Write {
                slot,
                off,
                len,
                seed,
            } => unit(self.handle(slot)?.write_all_at(&pattern(len, seed), off)),
            Read { slot, off, len } => read_at_most(self.handle(slot)?, off, len)
                .map(|d| Out::Data(Data(d)))
                .map_err(errno),
            ReadPath { path, off, len } => {
                let f = File::open(self.p(path)).map_err(errno)?;
                let d = read_at_most(&f, off, len).map_err(errno)?;
                close_fd(f)?;
                Ok(Out::Data(Data(d)))
            }
            SetLen { slot, len } => unit(self.handle(slot)?.set_len(len)),
            Truncate { path, len } => {
                let c = CString::new(self.p(path).as_os_str().as_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                if unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) } == 0 {
                    Ok(Out::Unit)
                } else {
                    Err(errno(io::Error::last_os_error()))
                }
            }
            Fsync(slot) => unit(self.handle(slot)?.sync_all()),
            Close(slot) => {
                let f = self.handles[slot].take().ok_or(libc::EBADF)?;
                close_fd(f).map(|_| Out::Unit)
            }
            Rename(a, b) => unit(std::fs::rename(self.p(a), self.p(b))),
            RenameNoReplace(a, b) => {
                let a = CString::new(self.p(a).as_os_str().as_bytes()).unwrap();
                let b = CString::new(self.p(b).as_os_str().as_bytes()).unwrap();
                // SAFETY: valid NUL-terminated paths.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_NOREPLACE,
                    )
                };
                if r == 0 {
                    Ok(Out::Unit)
                } else {
                    Err(errno(io::Error::last_os_error()))
                }
            }
            CreateNew(path) => {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(self.p(path))
                    .map_err(errno)?;
                close_fd(f).map(|_| Out::Unit)
            }
            Unlink(path) => unit(std::fs::remove_file(self.p(path))),
            Mkdir(path) => unit(std::fs::DirBuilder::new().mode(0o755).create(self.p(path))),
            Rmdir(path) => unit(std::fs::remove_dir(self.p(path))),
            Chmod(path, Mode(mode)) => unit(std::fs::set_permissions(
                self.p(path),
                std::fs::Permissions::from_mode(mode),
            )),
            Symlink { target, path } => unit(std::os::unix::fs::symlink(target, self.p(path))),
            Readlink(path) => std::fs::read_link(self.p(path))
                .map(|t| Out::Target(t.to_string_lossy().into_owned()))
                .map_err(errno),
            Stat { path, follow } => {
                let m = if follow {
                    std::fs::metadata(self.p(path))
                } else {
                    std::fs::symlink_metadata(self.p(path))
                };
                m.map(|m| Out::Attr(attr_of(&m))).map_err(errno)
            }
            ChildWrite {
                path,
                off,
                len,
                seed,
            } => run_child(
                &pattern(len, seed),
                &format!(
                    "dd of={} conv=notrunc oflag=seek_bytes seek={off} bs=1M iflag=fullblock status=none",
                    shell_quote(&self.p(path))
                ),
            ),
            ChildAppend { path, len, seed } => run_child(
                &pattern(len, seed),
                &format!("cat >> {}", shell_quote(&self.p(path))),
            ),
            // The world remounts the mount side before this (see `World::step`).
            Remount => Ok(Out::Unit),
            // The world runs the child once for both sides (see `World::step`).
            Spawn => Ok(Out::Unit),
            ReadDir(path) => {
                let mut names = Vec::new();
                for e in std::fs::read_dir(self.p(path)).map_err(errno)? {
                    let e = e.map_err(errno)?;
                    let kind = kind_char(e.file_type().map_err(errno)?);
                    names.push((e.file_name().to_string_lossy().into_owned(), kind));
                }
                names.sort();
                Ok(Out::Names(names))
            }
        }
    }

    /// Every entry under the root, sorted: attributes and content.
    fn tree(&self) -> Res {
        fn walk(root: &Path, rel: &str, out: &mut Vec<TreeEntry>) -> io::Result<()> {
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            let mut names: Vec<String> = std::fs::read_dir(&dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()?;
            names.sort();
            for name in names {
                let r = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let p = root.join(&r);
                let m = std::fs::symlink_metadata(&p)?;
                let attr = attr_of(&m);
                let content = match attr.kind {
                    'f' => Some(Data(std::fs::read(&p)?)),
                    'l' => Some(Data(
                        std::fs::read_link(&p)?.as_os_str().as_bytes().to_vec(),
                    )),
                    _ => None,
                };
                let is_dir = attr.kind == 'd';
                out.push((r.clone(), attr, content));
                if is_dir {
                    walk(root, &r, out)?;
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out).map_err(errno)?;
        Ok(Out::Tree(out))
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: turns generated operations into the steps run on both sides (MODEL_CHOICES).
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct HandleState {
    /// Canonical path relative to the case root (symlinks resolved) at the last rename.
    path: String,
    /// Its file was unlinked or replaced by a rename while open.
    orphan: bool,
}

struct Harness {
    /// The local case root, canonical: the truth for resolving symlinks.
    local_root: PathBuf,
    slots: Vec<Option<HandleState>>,
    /// Step around `KNOWN_BUGS` (the random test; not the regression tests).
    avoid_known_bugs: bool,
}

/// `op` acting on handle `s` instead.
fn with_slot(op: &Op, s: usize) -> Op {
    let mut op = op.clone();
    match &mut op {
        Write { slot, .. }
        | Read { slot, .. }
        | SetLen { slot, .. }
        | Fsync(slot)
        | Close(slot) => *slot = s,
        _ => {}
    }
    op
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

impl Harness {
    fn rel(&self, p: &Path) -> Option<String> {
        p.strip_prefix(&self.local_root)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    }

    /// The file `rel` names after following symlinks, if it exists.
    fn resolve_follow(&self, rel: &str) -> Option<String> {
        let p = std::fs::canonicalize(self.local_root.join(rel)).ok()?;
        self.rel(&p)
    }

    /// The entry `rel` names itself (its last component not followed).
    fn resolve_nofollow(&self, rel: &str) -> Option<String> {
        let full = self.local_root.join(rel);
        let parent = std::fs::canonicalize(full.parent()?).ok()?;
        let p = parent.join(full.file_name()?);
        std::fs::symlink_metadata(&p).ok()?;
        self.rel(&p)
    }

    /// The handle a handle operation acts on: its `slot` indexes the open handles, so that
    /// generated handle operations rarely miss.
    fn pick(&self, k: usize) -> Option<usize> {
        let open: Vec<usize> = (0..SLOTS).filter(|&s| self.slots[s].is_some()).collect();
        (!open.is_empty()).then(|| open[k % open.len()])
    }

    /// The steps that run `op` within the documented semantics (empty: skipped).
    fn plan(&self, op: &Op) -> Vec<Op> {
        let mut steps = Vec::new();
        match *op {
            Open { slot, .. } => {
                if self.slots[slot].is_some() {
                    steps.push(Close(slot));
                }
                steps.push(op.clone());
            }
            Write { slot, .. }
            | Read { slot, .. }
            | SetLen { slot, .. }
            | Fsync(slot)
            | Close(slot) => {
                if let Some(s) = self.pick(slot) {
                    steps.push(with_slot(op, s));
                }
            }
            Spawn
                if self.avoid_known_bugs
                    && known_bug("path-setattr-lost-after-a-child-process") => {}
            Remount => {
                steps.extend((0..SLOTS).filter(|&s| self.slots[s].is_some()).map(Close));
                steps.push(Remount);
            }
            _ => steps.push(op.clone()),
        }
        steps
    }

    /// What must be known before a step runs to update the state after it.
    fn before(&self, step: &Op) -> (Option<String>, Option<String>) {
        match *step {
            Rename(a, b) | RenameNoReplace(a, b) => {
                (self.resolve_nofollow(a), self.resolve_nofollow(b))
            }
            Unlink(p) => (self.resolve_nofollow(p), None),
            _ => (None, None),
        }
    }

    fn after(&mut self, step: &Op, pre: (Option<String>, Option<String>), local: &Res) {
        match *step {
            Open { slot, path, .. } if local.is_ok() => {
                let file = self
                    .resolve_follow(path)
                    .expect("an opened file has a canonical path");
                self.slots[slot] = Some(HandleState {
                    path: file,
                    orphan: false,
                });
            }
            Close(slot) => self.slots[slot] = None,
            Unlink(_) if local.is_ok() => {
                if let Some(gone) = pre.0 {
                    for h in self.slots.iter_mut().flatten() {
                        if h.path == gone {
                            h.orphan = true;
                        }
                    }
                }
            }
            Rename(..) | RenameNoReplace(..) if local.is_ok() => {
                let (Some(from), Some(to)) = (pre.0, pre.1.or_else(|| self.new_name_of(step)))
                else {
                    return;
                };
                if from == to {
                    return;
                }
                for h in self.slots.iter_mut().flatten() {
                    if h.orphan {
                        continue;
                    }
                    if h.path == to || under(&h.path, &to) {
                        h.orphan = true;
                    } else if h.path == from {
                        h.path = to.clone();
                    } else if under(&h.path, &from) {
                        h.path = format!("{to}{}", &h.path[from.len()..]);
                    }
                }
            }
            _ => {}
        }
    }

    /// The canonical name of a rename's target that did not exist before the rename.
    fn new_name_of(&self, step: &Op) -> Option<String> {
        match *step {
            Rename(_, b) | RenameNoReplace(_, b) => self.resolve_nofollow(b),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The world: one emulator, the mount under test, and an observer mount without caches.
// ---------------------------------------------------------------------------------------------

/// Options of the mount under test.
const MOUNT_ARGS: &[&str] = &["--metadata-ttl", "indefinite", "--part-size", "1M"];
/// The same without any metadata cache: every lookup and getattr asks COS, so what the mount
/// shows of files being written comes from its handles, not from what it remembers.
const UNCACHED_MOUNT_ARGS: &[&str] = &[
    "--metadata-ttl",
    "0s",
    "--negative-ttl",
    "0s",
    "--part-size",
    "1M",
];
/// The observer: another mount of the same bucket that caches nothing, so it shows what is
/// in COS (a second client's view) at the end of each case.
const OBSERVER_ARGS: &[&str] = &["--metadata-ttl", "0s", "--negative-ttl", "0s"];

struct World {
    emu: TestEmulator,
    mount_args: &'static [&'static str],
    mount: Mount,
    observer: Mount,
    cases: u64,
    /// Step around `KNOWN_BUGS` (the random test does, the regression tests do not;
    /// `COSMOUNT_MODEL_STRICT=1` makes the random test strict too).
    avoid_known_bugs: bool,
    /// The trace of the last case, for the failure report.
    trace: Vec<String>,
}

/// Progress for the watchdog: when the last step started and what it is.
static PROGRESS: Mutex<Option<(Instant, String, Vec<PathBuf>)>> = Mutex::new(None);
/// A step that takes longer than this means the mount hangs.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn progress(what: String, mounts: &[&Mount]) {
    *PROGRESS.lock().unwrap() = Some((
        Instant::now(),
        what,
        mounts.iter().map(|m| m.log.clone()).collect(),
    ));
}

/// Aborts the test process, with the step that hangs and the mount's log, instead of waiting
/// forever on a hung FUSE request. (The mounts die with their process group's fuse
/// connection; `fusermount3 -uz` is run for each.)
fn start_watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let g = PROGRESS.lock().unwrap();
                if let Some((t, what, logs)) = g.as_ref()
                    && t.elapsed() > STEP_TIMEOUT
                {
                    eprintln!(
                        "model: step hung for over {STEP_TIMEOUT:?}: {what}\naborting; mount logs:"
                    );
                    for log in logs {
                        let text = std::fs::read_to_string(log).unwrap_or_default();
                        let lines: Vec<&str> = text.lines().collect();
                        eprintln!("---- {} ----", log.display());
                        eprintln!("{}", lines[lines.len().saturating_sub(100)..].join("\n"));
                        if let Some(dir) = log.parent() {
                            let _ = std::process::Command::new("fusermount3")
                                .arg("-uz")
                                .arg(dir.join("mnt"))
                                .status();
                        }
                    }
                    std::process::abort();
                }
            }
        });
    });
}

fn healthy(m: &Mount) -> bool {
    common::mount::is_mounted(m.path()) && std::fs::metadata(m.path()).is_ok()
}

impl World {
    fn new(avoid_known_bugs: bool, mount_args: &'static [&'static str]) -> Self {
        start_watchdog();
        let emu = TestEmulator::start();
        let mount = Mount::start(&emu, mount_args);
        let observer = Mount::start(&emu, OBSERVER_ARGS);
        World {
            emu,
            mount_args,
            mount,
            observer,
            cases: 0,
            avoid_known_bugs,
            trace: Vec::new(),
        }
    }

    /// A crashed or hung-up mount is replaced, so that shrinking keeps working.
    fn ensure_healthy(&mut self) {
        if !healthy(&self.mount) {
            eprintln!("model: the mount under test died; mounting again");
            self.mount = Mount::start(&self.emu, self.mount_args);
        }
        if !healthy(&self.observer) {
            eprintln!("model: the observer mount died; mounting again");
            self.observer = Mount::start(&self.emu, OBSERVER_ARGS);
        }
    }

    /// Removes a finished case's objects directly in COS (the bucket would grow otherwise).
    fn remove_case_objects(&self, case: &str) {
        let client = self.emu.client();
        runtime().block_on(async {
            loop {
                let page = client
                    .list_objects(ListObjects::new(format!("{case}/")))
                    .await
                    .unwrap();
                let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
                if keys.is_empty() {
                    break;
                }
                client.delete_objects(&keys).await.unwrap();
            }
            let _ = client.delete_object(&format!("{case}/")).await;
        });
    }

    /// Runs one sequence on a fresh case directory; `Err` describes the first difference.
    fn run_case(&mut self, ops: &[Op]) -> Result<(), String> {
        self.ensure_healthy();
        self.cases += 1;
        let case = format!("case-{}", self.cases);
        self.trace.clear();
        let local_dir = tempfile::tempdir().unwrap();
        let local_root = local_dir.path().join(&case);
        let mount_root = self.mount.join(&case);
        for r in [&local_root, &mount_root] {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(r)
                .map_err(|e| format!("cannot create the case directory {}: {e}", r.display()))?;
        }
        let local_root = std::fs::canonicalize(&local_root).unwrap();
        let mut local = Side::new(local_root.clone());
        let mut mount = Side::new(mount_root);
        let mut harness = Harness {
            local_root,
            slots: vec![None; SLOTS],
            avoid_known_bugs: self.avoid_known_bugs,
        };
        let result = self.run_steps(ops, &mut local, &mut mount, &mut harness);
        // Whatever happened, close what is open (on the mount, it commits or aborts).
        for s in 0..SLOTS {
            let _ = local.handles[s].take();
            if let Some(f) = mount.handles[s].take() {
                let _ = close_fd(f);
            }
        }
        *PROGRESS.lock().unwrap() = None;
        if std::env::var_os("COSMOUNT_MODEL_TRACE").is_some() {
            eprintln!(
                "---- {case}: {} ----\n{}",
                if result.is_ok() { "ok" } else { "FAILED" },
                self.trace.join("\n")
            );
        }
        if result.is_ok() {
            self.remove_case_objects(&case);
        }
        result
    }

    fn step(
        &mut self,
        label: &str,
        step: &Op,
        local: &mut Side,
        mount: &mut Side,
    ) -> Result<Res, String> {
        progress(format!("{label} {step:?}"), &[&self.mount, &self.observer]);
        if let Spawn = step {
            let status = std::process::Command::new("true")
                .status()
                .map_err(|e| format!("cannot run `true`: {e}"))?;
            assert!(status.success());
        }
        if let Remount = step {
            assert!(mount.handles.iter().all(Option::is_none), "closed first");
            let case = mount
                .root
                .strip_prefix(self.mount.path())
                .unwrap()
                .to_path_buf();
            self.mount.unmount();
            self.mount = Mount::start(&self.emu, self.mount_args);
            mount.root = self.mount.path().join(case);
        }
        let mut l = local.apply(step);
        let mut m = mount.apply(step);
        normalise(&mut l);
        normalise(&mut m);
        if l == m {
            self.trace
                .push(format!("{label} {step:?}\n        => {}", show(&l)));
            Ok(l)
        } else {
            self.trace.push(format!(
                "{label} {step:?}\n        local: {}\n        mount: {}   <-- DIFFERS {}",
                show(&l),
                show(&m),
                describe_difference(&l, &m)
            ));
            Err(format!(
                "{label} {step:?}: local {} but mount {} {}",
                show(&l),
                show(&m),
                describe_difference(&l, &m)
            ))
        }
    }

    fn run_steps(
        &mut self,
        ops: &[Op],
        local: &mut Side,
        mount: &mut Side,
        harness: &mut Harness,
    ) -> Result<(), String> {
        for (i, op) in ops.iter().enumerate() {
            let steps = harness.plan(op);
            if steps.is_empty() {
                self.trace
                    .push(format!("#{i} {op:?}  (skipped: no usable handle)"));
            }
            for step in steps {
                let label = if std::mem::discriminant(&step) == std::mem::discriminant(op) {
                    format!("#{i}")
                } else {
                    format!("#{i} (model)")
                };
                let pre = harness.before(&step);
                let l = self.step(&label, &step, local, mount)?;
                harness.after(&step, pre, &l);
            }
        }
        // The end: close every handle, then the trees must match, here and in COS.
        for s in 0..SLOTS {
            if harness.slots[s].is_some() {
                let l = self.step("end", &Close(s), local, mount)?;
                harness.after(&Close(s), (None, None), &l);
            }
        }
        progress("comparing the trees".into(), &[&self.mount, &self.observer]);
        let mut l = local.tree();
        let mut m = mount.tree();
        normalise(&mut l);
        normalise(&mut m);
        if l != m {
            self.trace.push(format!(
                "end: tree\n        local: {}\n        mount: {}   <-- DIFFERS {}",
                show(&l),
                show(&m),
                describe_difference(&l, &m)
            ));
            return Err(format!(
                "the trees differ at the end: {}",
                describe_difference(&l, &m)
            ));
        }
        self.trace.push(format!("end: tree => {}", show(&l)));
        // What another client sees: the observer mount reads COS. The commit of a file whose
        // only change was O_TRUNC happens at release, which the kernel sends after close(2)
        // returns: allow it a moment to land.
        let observed = Side::new(self.observer.join(&format!("case-{}", self.cases)));
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut o = observed.tree();
            normalise(&mut o);
            if o == l {
                break;
            }
            if Instant::now() > deadline {
                self.trace.push(format!(
                    "end: tree seen by another client (observer mount)\n        local: {}\n        COS:   {}   <-- DIFFERS {}",
                    show(&l),
                    show(&o),
                    describe_difference(&l, &o)
                ));
                return Err(format!(
                    "another client sees a different tree in COS: {}",
                    describe_difference(&l, &o)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // No multipart upload is left behind once every handle is released. Only this case's
        // keys count, so that a leak fails its own case and shrinking finds its cause.
        let prefix = format!("case-{}/", self.cases);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left: Vec<String> = (self.emu.emulator.upload_keys(BUCKET).into_iter())
                .filter(|k| k.starts_with(&prefix))
                .collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "multipart upload(s) left after every handle was closed: {left:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Prints a sequence as Rust code, to paste into a `replay` regression test.
fn as_rust(ops: &[Op]) -> String {
    let mut s = String::from("vec![\n");
    for op in ops {
        s.push_str(&format!("    {op:?},\n"));
    }
    s.push(']');
    s
}

fn cases_from_env() -> u32 {
    std::env::var("COSMOUNT_MODEL_CASES")
        .ok()
        .map(|v| v.parse().expect("COSMOUNT_MODEL_CASES is a number"))
        .unwrap_or(32)
}

fn seed_from_env() -> [u8; 32] {
    match std::env::var("COSMOUNT_MODEL_SEED") {
        Ok(hex_seed) => {
            let v = hex::decode(hex_seed.trim()).expect("COSMOUNT_MODEL_SEED is hex");
            v.try_into().expect("COSMOUNT_MODEL_SEED has 64 hex digits")
        }
        Err(_) => rand::random(),
    }
}

/// Runs `cases` random sequences; on a failure, shrinks it and panics with the minimal
/// sequence and its trace.
fn run_model(cases: u32, mount_args: &'static [&'static str]) {
    let seed = seed_from_env();
    eprintln!(
        "model: {cases} cases, seed {} (replay with COSMOUNT_MODEL_SEED), mount {mount_args:?}",
        hex::encode(seed)
    );
    let strict = std::env::var_os("COSMOUNT_MODEL_STRICT").is_some();
    let world = RefCell::new(World::new(!strict, mount_args));
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        max_shrink_time: 20 * 60 * 1000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let started = Instant::now();
    let result = runner.run(&ops(), |ops| {
        world
            .borrow_mut()
            .run_case(&ops)
            .map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => eprintln!(
            "model: {cases} cases passed in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
        Err(TestError::Fail(reason, minimal)) => {
            // Run the minimal sequence once more for its trace.
            let again = world.borrow_mut().run_case(&minimal);
            let trace = world.borrow().trace.join("\n");
            panic!(
                "cosmount differs from the local file system.\n\
                 seed: {}\nreason: {reason}\n\
                 minimal sequence (replay(...) it in a regression test):\n{}\n\
                 trace of the minimal sequence ({}):\n{trace}\n\
                 allowed differences: {:#?}",
                hex::encode(seed),
                as_rust(&minimal),
                match again {
                    Ok(()) => "it passed when run again: a race".to_string(),
                    Err(e) => format!("failed again: {e}"),
                },
                ALLOWED_DIFFERENCES.iter().map(|d| d.0).collect::<Vec<_>>()
            );
        }
        Err(TestError::Abort(why)) => panic!("model: proptest aborted: {why}"),
    }
}

/// Runs one fixed sequence on a fresh world and asserts it behaves as on a local disk.
fn replay(ops: Vec<Op>) {
    replay_with(MOUNT_ARGS, ops)
}

/// `replay` on a mount with these options.
fn replay_with(mount_args: &'static [&'static str], ops: Vec<Op>) {
    let mut world = World::new(false, mount_args);
    if let Err(e) = world.run_case(&ops) {
        panic!(
            "{e}\nsequence:\n{}\ntrace:\n{}",
            as_rust(&ops),
            world.trace.join("\n")
        );
    }
}

#[test]
fn random_sequences_behave_as_on_a_local_disk() {
    run_model(cases_from_env(), MOUNT_ARGS);
}

#[test]
fn random_sequences_behave_as_on_a_local_disk_without_a_metadata_cache() {
    run_model(cases_from_env(), UNCACHED_MOUNT_ARGS);
}

// ---------------------------------------------------------------------------------------------
// Regression tests: the minimal sequences of the bugs this test found (see KNOWN_BUGS).
// ---------------------------------------------------------------------------------------------

/// A file larger than one part, renamed while open: the next commit copies the unchanged
/// part from the old key, which the rename deleted (ENOENT from fsync, the write is lost).
#[test]
fn regression_rename_of_an_open_file_multipart() {
    replay(vec![
        Open {
            slot: 0,
            path: "b",
            rw: false,
            trunc: false,
            create: true,
            append: false,
        },
        SetLen {
            slot: 0,
            len: 1048577,
        },
        Fsync(0),
        Rename("b", "x"),
        Write {
            slot: 0,
            off: 0,
            len: 1,
            seed: 0,
        },
        Fsync(0),
    ]);
}

/// A new file whose bytes are all still in memory (never spilled to the staging file) is
/// committed by fsync and then read through the same descriptor: the read must come from the
/// handle, not from a version the handle never opened (it answered 0 bytes).
#[test]
fn regression_read_after_fsync_of_a_file_held_in_memory() {
    for args in [MOUNT_ARGS, UNCACHED_MOUNT_ARGS] {
        replay_with(
            args,
            vec![
                Open {
                    slot: 0,
                    path: "a",
                    rw: true,
                    trunc: false,
                    create: true,
                    append: true,
                },
                Write {
                    slot: 0,
                    off: 0,
                    len: 1329,
                    seed: 0,
                },
                Write {
                    slot: 0,
                    off: 0,
                    len: 6606,
                    seed: 0,
                },
                Fsync(0),
                Read {
                    slot: 0,
                    off: 0,
                    len: 1,
                },
            ],
        );
    }
}

/// The same with a small file opened (not created) by the handle: the bytes not written
/// through it are fetched at commit from the old key, which the rename deleted.
#[test]
fn regression_rename_of_an_open_file_small() {
    replay(vec![
        Open {
            slot: 0,
            path: "b",
            rw: false,
            trunc: false,
            create: true,
            append: false,
        },
        Write {
            slot: 0,
            off: 0,
            len: 10,
            seed: 0,
        },
        Close(0),
        Open {
            slot: 0,
            path: "b",
            rw: true,
            trunc: false,
            create: false,
            append: false,
        },
        Rename("b", "x"),
        Write {
            slot: 0,
            off: 0,
            len: 1,
            seed: 1,
        },
        Close(0),
    ]);
}

/// rename(2) right after close(2) of the file's only descriptor, whose release (sent by the
/// kernel asynchronously after close returns) is still committing the file: the rename
/// waited for that handle, then tried to commit it after the release had removed it, and
/// failed with EBADF. An `O_TRUNC` open (`: > f`) is committed at release, which makes the
/// window wide; the random test found it as Create("x") (twice) then Rename("x", "a").
#[test]
fn regression_rename_right_after_close_of_the_file() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, MOUNT_ARGS);
    let mut wrong = Vec::new();
    for i in 0..300 {
        let (f, g) = (m.join(&format!("f{i}")), m.join(&format!("g{i}")));
        write_then_empty_by_o_trunc(&f);
        if let Err(e) = std::fs::rename(&f, &g) {
            wrong.push(format!("rename f{i} g{i} right after `: > f{i}`: {e}"));
            continue;
        }
        match std::fs::read(&g) {
            Ok(d) if d.is_empty() => {}
            other => wrong.push(format!("g{i} after the rename: {other:?}, expected empty")),
        }
    }
    assert_none_wrong(&wrong, "out of 300");
}

/// `: > f; echo x >> f`: the truncation of `: > f` (O_TRUNC alone) is committed at release,
/// which the kernel sends after close(2) returns; the next open of the file on the same mount
/// raced with it, took the old object as its base, and its close failed with ESTALE (the data
/// lost) or the file ended with the old content plus `x`. The mount's own changes must be seen
/// by itself at once (docs/SEMANTICS.md).
#[test]
fn regression_reopen_right_after_an_o_trunc_close_sees_the_truncation() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, MOUNT_ARGS);
    let mut wrong = Vec::new();
    for i in 0..300 {
        let f = m.join(&format!("f{i}"));
        write_then_empty_by_o_trunc(&f);
        let h = OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all_at(b"x", 0).unwrap();
        if let Err(e) = close_fd(h) {
            wrong.push(format!(
                "f{i}: close after appending: {}",
                io::Error::from_raw_os_error(e)
            ));
            continue;
        }
        let d = std::fs::read(&f).unwrap();
        if d != b"x" {
            wrong.push(format!(
                "f{i}: {:?}, expected \"x\"",
                String::from_utf8_lossy(&d)
            ));
        }
    }
    assert_none_wrong(&wrong, "out of 300");
}

/// ftruncate of a descriptor whose (committed) file was unlinked: ESTALE, where write(2)
/// through the same descriptor works and a local file system succeeds.
#[test]
fn regression_ftruncate_of_an_unlinked_open_file() {
    replay(vec![
        Create("x"),
        Open {
            slot: 0,
            path: "x",
            rw: false,
            trunc: false,
            create: false,
            append: false,
        },
        Unlink("x"),
        Write {
            slot: 0,
            off: 0,
            len: 10,
            seed: 1,
        },
        SetLen { slot: 0, len: 0 },
        Close(0),
    ]);
}

/// chmod of a file open for writing and larger than one part: the multipart upload started
/// in the background before the chmod carries the old mode, and Complete keeps it; the mount
/// shows the new mode, COS (any other client, or this mount after a restart) the old one.
#[test]
fn regression_chmod_of_a_file_being_written_in_parts_reaches_cos() {
    replay(vec![
        Open {
            slot: 0,
            path: "d",
            rw: false,
            trunc: false,
            create: true,
            append: false,
        },
        Write {
            slot: 0,
            off: 1,
            len: 1048576,
            seed: 0,
        },
        Chmod("d", Mode(0o640)),
    ]);
}

/// truncate(2) and chmod(2) of a path while another file has a busy write handle: cosmount
/// applied them to whichever write handle it could not lock at that instant (another file's),
/// so the other file was truncated or chmodded, and this one kept its old size and mode in COS
/// although truncate and chmod returned success. The random test hit it as a lost path
/// truncate right after a close (the releasing handle was busy); this makes it deterministic.
#[test]
fn regression_truncate_and_chmod_by_path_change_only_their_file_while_another_is_written() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const REGION: u64 = 8 << 20;
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, MOUNT_ARGS);
    std::fs::write(m.join("y"), b"0123456789").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (x, st) = (m.join("x"), stop.clone());
    // Another file written all along, with writes that keep its handle busy.
    let writer = std::thread::spawn(move || {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&x)
            .unwrap();
        let data = pattern(256 << 10, 7);
        let mut written = 0u64;
        while !st.load(Ordering::Relaxed) || written < REGION {
            f.write_all_at(&data, written % REGION).unwrap();
            written += data.len() as u64;
        }
        close_fd(f).unwrap();
    });
    let mut wrong = Vec::new();
    let y = CString::new(m.join("y").as_os_str().as_bytes()).unwrap();
    for i in 0..200u64 {
        let len = 10 + i;
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::truncate(y.as_ptr(), len as libc::off_t) }, 0);
        let got = std::fs::read(m.join("y")).unwrap().len() as u64;
        if got != len {
            wrong.push(format!("truncate(y, {len}) then read y: {got} bytes"));
        }
        let mode = if i % 2 == 0 { 0o600 } else { 0o640 };
        std::fs::set_permissions(m.join("y"), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let x = std::fs::metadata(m.join("x")).unwrap();
    if x.len() != REGION || x.mode() & 0o7777 != 0o644 {
        wrong.push(format!(
            "x (never truncated nor chmodded): size {} mode {:o}, expected {REGION} and 644",
            x.len(),
            x.mode() & 0o7777
        ));
    }
    // What COS holds, through a mount without caches.
    let other = Mount::start(&emu, OBSERVER_ARGS);
    let y = std::fs::metadata(other.join("y")).unwrap();
    if y.len() != 209 || y.mode() & 0o7777 != 0o640 {
        wrong.push(format!(
            "y in COS: size {} mode {:o}, expected 209 and 640",
            y.len(),
            y.mode() & 0o7777
        ));
    }
    assert_none_wrong(&wrong, "");
}

/// With `--metadata-ttl 0s`, readdir typed a symlink as a regular file (lstat was right).
#[test]
fn regression_readdir_shows_symlinks_without_a_metadata_cache() {
    replay_with(
        UNCACHED_MOUNT_ARGS,
        vec![
            Symlink {
                target: "a",
                path: "a",
            },
            ReadDir(""),
        ],
    );
}

/// With `--metadata-ttl 0s`, a chmod of a committed file that is open for writing was not
/// shown by stat until the handle committed.
#[test]
fn regression_chmod_of_an_open_file_shows_without_a_metadata_cache() {
    replay_with(
        UNCACHED_MOUNT_ARGS,
        vec![
            Open {
                slot: 0,
                path: "x",
                rw: false,
                trunc: false,
                create: true,
                append: false,
            },
            Fsync(0),
            Chmod("x", Mode(0o640)),
            Stat {
                path: "x",
                follow: false,
            },
        ],
    );
}

/// `: > f` then at once truncate(2) and chmod(2) of f: the O_TRUNC-only descriptor is
/// committed at RELEASE, which the kernel sends after close(2) returns, and that commit undid
/// the truncate (f empty), or the chmod never reached COS, or the truncate extended the old
/// content. The random test found it as Create("b") then Truncate { path: "b", .. }.
#[test]
fn regression_truncate_and_chmod_right_after_an_o_trunc_close() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, MOUNT_ARGS);
    let mut wrong = Vec::new();
    for i in 0..200 {
        let f = m.join(&format!("f{i}"));
        write_then_empty_by_o_trunc(&f);
        let c = CString::new(f.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::truncate(c.as_ptr(), 5000) }, 0);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let d = std::fs::read(&f).unwrap();
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o7777;
        if d != vec![0u8; 5000] || mode != 0o600 {
            wrong.push(format!(
                "f{i} on the mount: {} bytes starting {:?}, mode {mode:o}",
                d.len(),
                String::from_utf8_lossy(&d[..d.len().min(8)])
            ));
        }
    }
    // What COS holds, through a mount without caches.
    let other = Mount::start(&emu, OBSERVER_ARGS);
    for i in 0..200 {
        let md = std::fs::metadata(other.join(&format!("f{i}"))).unwrap();
        if md.len() != 5000 || md.mode() & 0o7777 != 0o600 {
            wrong.push(format!(
                "f{i} in COS: {} bytes, mode {:o}",
                md.len(),
                md.mode() & 0o7777
            ));
        }
    }
    assert_none_wrong(&wrong, "expected 5000 zero bytes, mode 600");
}

/// `: > f; rm f`: the O_TRUNC-only descriptor is committed at RELEASE, which the kernel sends
/// after close(2) returns; a release that came after the unlink stored `f` again, so a removed
/// file came back (on the mount and in COS). The random test found it as Create("a") then
/// Unlink("a"). `: > f; mv f g` is checked the same way (it passes; a guard).
#[test]
fn regression_unlink_and_rename_right_after_an_o_trunc_close_do_not_resurrect() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, MOUNT_ARGS);
    for i in 0..200 {
        let f = m.join(&format!("f{i}"));
        write_then_empty_by_o_trunc(&f);
        if i % 2 == 0 {
            std::fs::remove_file(&f).unwrap();
        } else {
            std::fs::rename(&f, m.join(&format!("g{i}"))).unwrap();
        }
    }
    // Let every release land, then look on the mount and in COS.
    std::thread::sleep(Duration::from_millis(500));
    let other = Mount::start(&emu, OBSERVER_ARGS);
    let mut wrong = Vec::new();
    for (side, root) in [("mount", m.path()), ("COS", other.path())] {
        for i in 0..200 {
            if root.join(format!("f{i}")).symlink_metadata().is_ok() {
                let how = if i % 2 == 0 { "unlinked" } else { "renamed" };
                wrong.push(format!("{side}: f{i} exists after it was {how}"));
            }
            if i % 2 == 1 {
                match std::fs::read(root.join(format!("g{i}"))) {
                    Ok(d) if d.is_empty() => {}
                    other => wrong.push(format!("{side}: g{i} is {other:?}, expected empty")),
                }
            }
        }
    }
    assert_none_wrong(&wrong, "");
}

/// A new file, still open and never committed, renamed over an existing file: the old
/// object stayed in COS under the new name, so unlinking the renamed file brought the old
/// one back (and, without a metadata cache, readdir showed the old object's type).
#[test]
fn regression_rename_of_a_new_open_file_over_another_then_unlink() {
    replay(vec![
        Create("d"),
        Open {
            slot: 0,
            path: "b",
            rw: false,
            trunc: false,
            create: true,
            append: false,
        },
        Rename("b", "d"),
        Unlink("d"),
        Close(0),
    ]);
}

/// The readdir side of the same: without a metadata cache, the renamed new file showed the
/// type of the symlink it replaced.
#[test]
fn regression_readdir_after_a_new_open_file_replaced_a_symlink() {
    replay_with(
        UNCACHED_MOUNT_ARGS,
        vec![
            Symlink {
                target: "b",
                path: "d",
            },
            Open {
                slot: 0,
                path: "b",
                rw: false,
                trunc: false,
                create: true,
                append: false,
            },
            Rename("b", "d"),
            ReadDir(""),
        ],
    );
}

/// The writer starts a child process (its exec closes the inherited descriptor: a FLUSH from
/// another process), then the file is truncated and chmodded by path: both went straight to
/// COS and the handle's commit at close overwrote them (the cut bytes came back, the mode
/// reverted).
#[test]
fn regression_truncate_and_chmod_by_path_after_the_writer_started_a_child() {
    replay(vec![
        Open {
            slot: 0,
            path: "x",
            rw: true,
            trunc: false,
            create: true,
            append: false,
        },
        Write {
            slot: 0,
            off: 0,
            len: 10,
            seed: 1,
        },
        Spawn,
        Truncate { path: "x", len: 3 },
        Chmod("x", Mode(0o600)),
        Read {
            slot: 0,
            off: 0,
            len: 100,
        },
        Write {
            slot: 0,
            off: 20,
            len: 2,
            seed: 2,
        },
        Close(0),
    ]);
}

/// The minimal sequence the random test found for the same bug: the chmod of a new file,
/// made after its writer started a child, was lost at close.
#[test]
fn regression_chmod_after_the_writer_started_a_child() {
    replay(vec![
        Open {
            slot: 0,
            path: "a",
            rw: false,
            trunc: false,
            create: true,
            append: false,
        },
        Spawn,
        Chmod("a", Mode(0o600)),
        Write {
            slot: 0,
            off: 0,
            len: 1,
            seed: 0,
        },
    ]);
}
