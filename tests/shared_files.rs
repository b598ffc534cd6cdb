//! One file, one state: several processes and descriptors on one file, files removed or
//! renamed while open, two mounts of one bucket, and another client changing the bucket
//! underneath, all through real mounts over the emulator. What is stored is checked with
//! Tencent's official SDK.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use common::mount::Mount;
use common::{TestEmulator, pattern, sdk, sdk_ok, sh};

/// The object's bytes as the official SDK reads them.
fn stored(emu: &TestEmulator, key: &str) -> Vec<u8> {
    let out = sdk(emu, &["get", key]);
    assert!(
        out.status.success(),
        "sdk get {key}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// Checks that `text` holds exactly the lines `p<p> line <i>` for every process `p` below
/// `procs` and `i` below `lines`, each once and each process's in order.
fn assert_all_lines(text: &[u8], procs: usize, lines: usize) {
    let text = String::from_utf8_lossy(text);
    let mut seen = vec![Vec::new(); procs];
    let mut bad = Vec::new();
    for l in text.lines() {
        let parsed = l.strip_prefix('p').and_then(|r| {
            let (p, i) = r.split_once(" line ")?;
            Some((p.parse::<usize>().ok()?, i.parse::<usize>().ok()?))
        });
        match parsed {
            Some((p, i)) if p < procs => seen[p].push(i),
            _ => bad.push(l.to_string()),
        }
    }
    assert!(
        bad.is_empty(),
        "lines nobody wrote: {:?}",
        &bad[..bad.len().min(5)]
    );
    for (p, got) in seen.iter().enumerate() {
        let want: Vec<usize> = (0..lines).collect();
        assert_eq!(
            got.len(),
            lines,
            "process {p}: {} of {lines} lines stored",
            got.len()
        );
        assert_eq!(got, &want, "process {p}: lines out of order or repeated");
    }
}

/// Runs `procs` bash processes at once in `dir`, process `p` running `script` with `$p` set.
fn run_parallel(dir: &std::path::Path, procs: usize, script: &str) {
    wait_all(
        (0..procs)
            .map(|p| {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(script)
                    .env("p", p.to_string())
                    .current_dir(dir);
                c
            })
            .collect(),
    );
}

/// Starts every command at once, then waits for all; each must succeed.
fn wait_all(commands: Vec<Command>) {
    let children: Vec<_> = commands
        .into_iter()
        .map(|mut c| c.stderr(std::process::Stdio::piped()).spawn().unwrap())
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "process {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn parallel_jobs_appending_to_one_log_lose_no_line() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::create_dir(m.join("logs")).unwrap();
    // Each line is its own open, append and close, as `>>` in a shell loop does.
    run_parallel(
        m.path(),
        8,
        r#"set -e; for i in $(seq 0 199); do echo "p$p line $i" >> logs/app.log; done"#,
    );
    assert_all_lines(&stored(&emu, "logs/app.log"), 8, 200);
    assert_all_lines(&std::fs::read(m.join("logs/app.log")).unwrap(), 8, 200);
}

#[test]
fn processes_holding_append_descriptors_lose_no_line() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::write(m.join("held.log"), b"").unwrap();
    // Each process keeps one O_APPEND descriptor for all its lines, and syncs now and then.
    run_parallel(
        m.path(),
        8,
        r#"set -e; exec 3>>held.log
           for i in $(seq 0 199); do
             echo "p$p line $i" >&3
             if (( i % 50 == 49 )); then python3 -c 'import os; os.fsync(3)'; fi
           done
           exec 3>&-"#,
    );
    assert_all_lines(&stored(&emu, "held.log"), 8, 200);
}

#[test]
fn concurrent_writes_at_disjoint_offsets_all_land() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    let block = 65536;
    std::fs::write(m.join("blocks"), vec![0u8; 10 * block]).unwrap();
    let src = tempfile::tempdir().unwrap();
    for i in 0..10 {
        std::fs::write(src.path().join(format!("b{i}")), pattern(block, i as u64)).unwrap();
    }
    wait_all(
        (0..10)
            .map(|i| {
                let mut dd = Command::new("dd");
                dd.arg(format!("if={}", src.path().join(format!("b{i}")).display()))
                    .arg(format!("of={}", m.join("blocks").display()))
                    .args(["bs=64K", "count=1", "conv=notrunc", "status=none"])
                    .arg(format!("seek={i}"));
                dd
            })
            .collect(),
    );
    let data = stored(&emu, "blocks");
    assert_eq!(data.len(), 10 * block);
    for i in 0..10 {
        assert!(
            data[i * block..(i + 1) * block] == pattern(block, i as u64)[..],
            "block {i} did not land"
        );
    }
}

#[test]
fn descriptors_of_one_file_see_each_others_writes_at_once() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::write(m.join("f"), b"0123456789").unwrap();
    let mut a = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    let mut b = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("f"))
        .unwrap();
    a.write_all(b"AA").unwrap();
    b.seek(SeekFrom::Start(5)).unwrap();
    b.write_all(b"BB").unwrap();
    // Each descriptor reads the other's bytes before anything is committed.
    let mut buf = String::new();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "AA234BB789");
    // A close of one commits every descriptor's bytes so far.
    drop(a);
    assert_eq!(stored(&emu, "f"), b"AA234BB789");
    b.write_all(b"C").unwrap();
    b.sync_all().unwrap();
    assert_eq!(stored(&emu, "f"), b"AA234BBC89");
    drop(b);
    // A read-only descriptor closing does not publish a writer's half-written file.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join("f"))
        .unwrap();
    w.write_all(b"half").unwrap();
    let r = std::fs::File::open(m.join("f")).unwrap();
    drop(r);
    assert_eq!(
        stored(&emu, "f"),
        b"AA234BBC89",
        "not published by a reader's close"
    );
    w.write_all(b" and whole").unwrap();
    drop(w);
    assert_eq!(stored(&emu, "f"), b"half and whole");
}

/// A streaming writer's full parts go into the staging file behind it while their uploads are
/// in flight (slowed down here); another descriptor reading the file meanwhile, across every
/// boundary of part, staged bytes and the part still in memory, gets exactly what was written,
/// and so does the writer's own rewrite of a part already sent.
#[test]
fn a_reader_following_a_streaming_writer_reads_every_byte_written() {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    use std::sync::atomic::{AtomicU64, Ordering};
    const MIB: usize = 1 << 20;
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    emu.emulator.faults().set("put_part:delay=30ms:1").unwrap();
    let mut data = pattern(12 * MIB, 21);
    let path = m.join("stream");
    let mut w = std::fs::File::create(&path).unwrap();
    let r = std::fs::File::open(&path).unwrap();
    let written = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let expected = data.clone();
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut checks = 0u32;
            let mut seed = 7u64;
            let mut buf = vec![0u8; 3 * MIB / 2];
            loop {
                let finished = done.load(Ordering::Acquire) == 1;
                let n = written.load(Ordering::Acquire) as usize;
                if n > 0 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Every other read ends at the last byte written: the part that has just
                    // gone into the staging file is the one in question.
                    let len = ((seed >> 13) as usize % buf.len()).clamp(1, n);
                    let start = if checks % 2 == 0 {
                        n - len
                    } else {
                        (seed >> 33) as usize % (n - len + 1)
                    };
                    // The kernel may keep pages the writer wrote; drop them, so the read asks
                    // the mount.
                    // SAFETY: a valid descriptor; advice only.
                    unsafe { libc::posix_fadvise(r.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
                    r.read_exact_at(&mut buf[..len], start as u64).unwrap();
                    assert!(
                        buf[..len] == expected[start..start + len],
                        "bytes [{start}, {}) differ from what was written",
                        start + len
                    );
                    checks += 1;
                }
                if finished {
                    return checks;
                }
            }
        });
        for (i, chunk) in data.chunks(256 << 10).enumerate() {
            w.write_all(chunk).unwrap();
            written.fetch_add(chunk.len() as u64, Ordering::Release);
            if i % 4 == 3 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        done.store(1, Ordering::Release);
        let checks = reader.join().unwrap();
        assert!(checks >= 20, "the reader checked only {checks} ranges");
    });
    // The writer goes back into a part whose upload already went, then finishes.
    let patch = pattern(MIB / 2, 22);
    w.write_all_at(&patch, (2 * MIB + MIB / 4) as u64).unwrap();
    data[2 * MIB + MIB / 4..2 * MIB + 3 * MIB / 4].copy_from_slice(&patch);
    let mut back = vec![0u8; 2 * MIB];
    r.read_exact_at(&mut back, (MIB + MIB / 2) as u64).unwrap();
    assert!(
        back[..] == data[MIB + MIB / 2..MIB * 7 / 2],
        "the rewrite reads back"
    );
    drop(w);
    drop(r);
    emu.emulator.faults().clear();
    assert!(
        stored(&emu, "stream") == data,
        "COS holds every byte written"
    );
}

#[test]
fn a_removed_open_file_lives_on_for_its_descriptors() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    let big = pattern(3 << 20, 5);
    std::fs::write(m.join("big"), &big).unwrap();
    std::fs::write(m.join("small"), b"kept after rm\n").unwrap();
    // `exec 5<f; rm f; cat <&5`, as a shell does it.
    let out = sh(m.path(), "exec 5<small; rm small; cat <&5");
    assert_eq!(out, "kept after rm\n");
    // A large file opened for reading and writing, removed, then read and written on.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("big"))
        .unwrap();
    std::fs::remove_file(m.join("big")).unwrap();
    assert_eq!(
        std::fs::metadata(m.join("big")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT),
        "the name is gone at once"
    );
    let names: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!names.iter().any(|n| n == "big"), "not listed: {names:?}");
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert!(back == big, "the removed file reads back whole");
    f.write_all(b"more").unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.metadata().unwrap().len(), big.len() as u64 + 4);
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    drop(f);
    for key in ["big", "small"] {
        let out = sdk(&emu, &["head", key]);
        assert_eq!(out.status.code(), Some(3), "{key} must stay gone");
    }
    assert_eq!(emu.emulator.upload_count(common::BUCKET), 0);
}

#[test]
fn a_renamed_open_file_commits_under_its_new_name() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("draft")).unwrap();
    f.write_all(b"first ").unwrap();
    f.sync_all().unwrap();
    std::fs::create_dir(m.join("final")).unwrap();
    std::fs::rename(m.join("draft"), m.join("final/doc")).unwrap();
    f.write_all(b"second").unwrap();
    drop(f);
    assert_eq!(stored(&emu, "final/doc"), b"first second");
    assert_eq!(sdk(&emu, &["head", "draft"]).status.code(), Some(3));
}

#[test]
fn two_mounts_appending_in_turn_keep_every_line() {
    let emu = TestEmulator::start();
    let a = Mount::start(&emu, &[]);
    let b = Mount::start(&emu, &[]);
    std::fs::write(a.join("turns.log"), b"").unwrap();
    // Both read the file first, so each has it cached when the other appends.
    let _ = std::fs::read(b.join("turns.log")).unwrap();
    for i in 0..20 {
        for (p, m) in [(0, &a), (1, &b)] {
            sh(m.path(), &format!("echo 'p{p} line {i}' >> turns.log"));
        }
    }
    let text = stored(&emu, "turns.log");
    assert_all_lines(&text, 2, 20);
    let expected: String = (0..20)
        .flat_map(|i| [format!("p0 line {i}\n"), format!("p1 line {i}\n")])
        .collect();
    assert_eq!(String::from_utf8_lossy(&text), expected, "in turn order");
}

#[test]
fn another_clients_changes_are_seen_by_the_next_lookup_and_listing() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::create_dir(m.join("made")).unwrap();
    assert_eq!(std::fs::read_dir(m.path()).unwrap().count(), 1);
    assert!(std::fs::metadata(m.join("x")).is_err());
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"from the sdk\n").unwrap();
    let path = src.path().to_str().unwrap();
    // Right after this mount made, listed and missed them, as `coscmd upload x; cat /mnt/x`.
    sdk_ok(&emu, &["put", "x", path]);
    sdk_ok(&emu, &["put", "made/y", path]);
    assert_eq!(sh(m.path(), "cat x"), "from the sdk\n");
    assert_eq!(sh(m.path(), "ls made"), "y\n");
    assert_eq!(std::fs::metadata(m.join("made/y")).unwrap().len(), 13);
    // A removal by another client shows in the next listing.
    runtime_delete(&emu, "made/y");
    assert_eq!(sh(m.path(), "ls made"), "");
}

#[test]
fn an_append_to_a_file_another_client_removed_creates_it_anew() {
    let emu = TestEmulator::start();
    // Attributes (and the kernel's entries) cached for long: the name is still known here.
    let m = Mount::start(&emu, &["--metadata-ttl", "30s"]);
    std::fs::write(m.join("log"), b"old\n").unwrap();
    assert_eq!(std::fs::metadata(m.join("log")).unwrap().len(), 4);
    runtime_delete(&emu, "log");
    // Close-to-open: the open for writing finds the object gone, and the append makes a new
    // file instead of building on what this mount remembered.
    sh(m.path(), "echo new >> log");
    assert_eq!(stored(&emu, "log"), b"new\n");
}

fn runtime_delete(emu: &TestEmulator, key: &str) {
    use cosmount::cos::ObjectClient;
    common::runtime()
        .block_on(emu.client().delete_object(key))
        .unwrap();
}

#[test]
fn fifos_sockets_and_devices_are_stored_as_cosfs_stores_them() {
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "mkfifo -m 640 fifo && mknod chr c 1 3 && mknod blk b 7 0 \
         && python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.bind('sock')\"",
    );
    let check = |root: &std::path::Path| {
        let t = |n: &str| std::fs::symlink_metadata(root.join(n)).unwrap();
        assert!(t("fifo").file_type().is_fifo());
        assert_eq!(t("fifo").mode() & 0o7777, 0o640);
        assert!(t("sock").file_type().is_socket());
        assert!(t("chr").file_type().is_char_device());
        assert_eq!(t("chr").rdev(), libc::makedev(1, 3));
        assert!(t("blk").file_type().is_block_device());
        assert_eq!(t("blk").rdev(), libc::makedev(7, 0));
    };
    check(m.path());
    // A FIFO on the mount works as one (the kernel serves it).
    let out = sh(m.path(), "(echo through > fifo &) ; cat fifo");
    assert_eq!(out, "through\n");
    m.unmount();
    let m = Mount::start(&emu, &[]);
    check(m.path());
    // In COS: empty objects whose mode carries the type, the device number beside it.
    let head = sdk_ok(&emu, &["head", "chr"]);
    let v: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(v["content-length"], "0");
    assert_eq!(
        v["x-cos-meta-mode"],
        (libc::S_IFCHR | 0o644).to_string(),
        "{head}"
    );
    assert_eq!(
        v["x-cos-meta-rdev"],
        libc::makedev(1, 3).to_string(),
        "{head}"
    );
    // One written by another cosfs-compatible client shows as what its mode says.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mode = format!("mode={}", libc::S_IFIFO | 0o600);
    sdk_ok(
        &emu,
        &[
            "put",
            "their-fifo",
            empty.path().to_str().unwrap(),
            "--meta",
            &mode,
        ],
    );
    assert!(
        std::fs::symlink_metadata(m.join("their-fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn times_are_kept_and_move_as_posix_says() {
    use std::time::{Duration, SystemTime};
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &[]);
    let pause = || std::thread::sleep(Duration::from_millis(20));
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("d/f"), b"x").unwrap();
    let stat = |p: &str| std::fs::symlink_metadata(m.join(p)).unwrap();
    let ctime = |p: &str| {
        let s = stat(p);
        (s.ctime(), s.ctime_nsec())
    };
    let mtime = |p: &str| {
        let s = stat(p);
        (s.mtime(), s.mtime_nsec())
    };
    // Every change of a file moves its ctime; a change of its content its mtime too.
    let c0 = ctime("d/f");
    pause();
    sh(m.path(), "chmod 600 d/f");
    let c1 = ctime("d/f");
    assert!(c1 > c0, "chmod moves ctime");
    assert_eq!(stat("d/f").mode() & 0o777, 0o600);
    pause();
    let m0 = mtime("d/f");
    sh(m.path(), "echo more >> d/f");
    assert!(ctime("d/f") > c1, "a write moves ctime");
    assert!(mtime("d/f") > m0, "a write moves mtime");
    pause();
    let c2 = ctime("d/f");
    sh(m.path(), "truncate -s 1 d/f");
    assert!(ctime("d/f") > c2, "truncate moves ctime");
    // Entries made, removed or renamed move their directory's mtime and ctime.
    let (dm, dc) = (mtime("d"), ctime("d"));
    pause();
    std::fs::write(m.join("d/g"), b"y").unwrap();
    assert!(mtime("d") > dm && ctime("d") > dc, "a new entry");
    let dm = mtime("d");
    pause();
    std::fs::remove_file(m.join("d/g")).unwrap();
    assert!(mtime("d") > dm, "a removed entry");
    let dm = mtime("d");
    pause();
    std::fs::rename(m.join("d/f"), m.join("d/h")).unwrap();
    assert!(mtime("d") > dm, "a renamed entry");
    // utimensat: UTIME_OMIT leaves a time alone, UTIME_NOW takes the time of the call.
    let path = std::ffi::CString::new(m.join("d/h").to_str().unwrap()).unwrap();
    let set = |atime: libc::timespec, mtime: libc::timespec| {
        let times = [atime, mtime];
        // SAFETY: a valid NUL-terminated path and two timespecs.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    };
    let at = |sec, nsec| libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    set(at(1_000_000_000, 5), at(1_100_000_000, 250_000_000));
    set(at(0, libc::UTIME_OMIT), at(0, libc::UTIME_OMIT));
    assert_eq!(
        (stat("d/h").atime(), stat("d/h").atime_nsec()),
        (1_000_000_000, 5)
    );
    assert_eq!(mtime("d/h"), (1_100_000_000, 250_000_000));
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    set(at(0, libc::UTIME_OMIT), at(0, libc::UTIME_NOW));
    assert_eq!(stat("d/h").atime(), 1_000_000_000, "atime omitted");
    assert!(stat("d/h").mtime() >= before, "mtime now");
    // Reads do not move atime; times survive a remount and are stored as cosfs stores them.
    let _ = std::fs::read(m.join("d/h")).unwrap();
    assert_eq!(stat("d/h").atime(), 1_000_000_000);
    m.unmount();
    let m2 = Mount::start(&emu, &[]);
    let s = std::fs::metadata(m2.join("d/h")).unwrap();
    assert_eq!((s.atime(), s.atime_nsec()), (1_000_000_000, 5));
    let head: serde_json::Value = serde_json::from_str(&sdk_ok(&emu, &["head", "d/h"])).unwrap();
    assert_eq!(head["x-cos-meta-atime"], "1000000000.000000005");
    assert!(
        head["x-cos-meta-ctime"].as_str().is_some(),
        "ctime stored: {head}"
    );
}

/// Pages of `f` in the kernel's page cache (cachestat(2), Linux 6.5+).
fn cached_pages(f: &std::fs::File) -> u64 {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    const SYS_CACHESTAT: libc::c_long = 451;
    let range = Range { off: 0, len: 0 };
    let mut st = Stat::default();
    // SAFETY: both structs are the kernel's layout and live across the call.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            f.as_raw_fd(),
            &range as *const Range,
            &mut st as *mut Stat,
            0,
        )
    };
    assert_eq!(rc, 0, "cachestat: {}", std::io::Error::last_os_error());
    st.nr_cache
}

/// A descriptor that only writes bypasses the kernel's page cache (its pages would serve no
/// read), and a reader of the same file holding cached pages still reads what it wrote at
/// once: the kernel drops the pages a direct write covers. A read-write descriptor writes
/// through the page cache as before.
#[test]
fn a_write_only_descriptor_leaves_no_pages_and_readers_see_its_writes() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    let old = pattern(1 << 20, 61);
    let new = pattern(1 << 20, 62);
    std::fs::write(m.join("f"), &old).unwrap();
    for read_write in [false, true] {
        let mut w = std::fs::OpenOptions::new()
            .read(read_write)
            .write(true)
            .open(m.join("f"))
            .unwrap();
        let mut r = std::fs::File::open(m.join("f")).unwrap();
        let mut seen = Vec::new();
        r.read_to_end(&mut seen).unwrap();
        let expected = if read_write { &new } else { &old };
        assert!(&seen == expected);
        assert_eq!(cached_pages(&r), 256, "the reader's pages are cached");
        let written = if read_write { &old } else { &new };
        w.write_all(written).unwrap();
        let pages = cached_pages(&r);
        if read_write {
            assert_eq!(
                pages, 256,
                "a read-write descriptor writes through the page cache"
            );
        } else {
            assert_eq!(
                pages, 0,
                "a write-only descriptor's write left pages cached"
            );
        }
        let mut again = vec![0; 1 << 20];
        r.seek(SeekFrom::Start(0)).unwrap();
        r.read_exact(&mut again).unwrap();
        assert!(&again == written, "the reader sees the write at once");
        drop(w);
        assert!(std::fs::read(m.join("f")).unwrap() == *written);
    }
    assert!(stored(&emu, "f") == old);
}
