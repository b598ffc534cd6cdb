//! The local data cache (`--data-cache DIR`) through real mounts: repeated reads and reads
//! after a remount need no GET, files just written enter it without a download, a changed
//! object never serves old bytes, a damaged block is fetched again, the bound holds, a full
//! disk or a removed directory only makes reads go to COS, and one cache directory serves one
//! mount at a time.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::mount::Mount;
use common::{TestEmulator, pattern, runtime, sdk_ok};
use cosmount::cos::{Body, ObjectClient, PutObject};

const MIB: usize = 1 << 20;

/// Drops the kernel's page cache (the tests run as root), so a read goes to the mount.
fn drop_page_cache() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("root drops the page cache");
}

fn cache_args(dir: &Path) -> Vec<String> {
    vec![
        "--data-cache".into(),
        dir.to_str().unwrap().into(),
        "--metadata-ttl".into(),
        "0s".into(),
    ]
}

fn start(emu: &TestEmulator, dir: &Path, extra: &[&str]) -> Mount {
    let mut args = cache_args(dir);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Mount::start(emu, &refs)
}

fn put_external(emu: &TestEmulator, key: &str, data: &[u8]) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    sdk_ok(emu, &["put", key, f.path().to_str().unwrap()]);
}

#[test]
fn repeated_reads_and_remounts_need_no_get() {
    let emu = TestEmulator::start();
    let cache = tempfile::tempdir().unwrap();
    let big = pattern(20 * MIB + 123, 1);
    put_external(&emu, "big", &big);
    let mut m = start(&emu, cache.path(), &[]);
    assert!(std::fs::read(m.join("big")).unwrap() == big);
    // Written through the mount: the staging file fills the cache, no download needed.
    let written = pattern(9 * MIB + 7, 2);
    std::fs::write(m.join("written"), &written).unwrap();
    m.unmount();
    drop_page_cache();
    let gets = emu.op_count("get");
    let m = start(&emu, cache.path(), &[]);
    assert!(
        std::fs::read(m.join("big")).unwrap() == big,
        "after a remount"
    );
    assert!(std::fs::read(m.join("written")).unwrap() == written);
    // A rename is a copy on the server: the same bytes, so the entry moves with the file.
    std::fs::rename(m.join("big"), m.join("moved")).unwrap();
    drop_page_cache();
    assert!(
        std::fs::read(m.join("moved")).unwrap() == big,
        "after a rename"
    );
    // So do the files of a directory renamed (key by key on the server).
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::rename(m.join("moved"), m.join("d/inner")).unwrap();
    std::fs::rename(m.join("d"), m.join("e")).unwrap();
    drop_page_cache();
    assert!(
        std::fs::read(m.join("e/inner")).unwrap() == big,
        "after a rename of its directory"
    );
    assert_eq!(
        emu.op_count("get"),
        gets,
        "every byte came from the data cache"
    );
}

/// `ls -l` of `dir`: one line per entry, mode and name.
fn modes(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new("ls").arg("-l").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[f.len() - 1].to_string())
        })
        .collect()
}

/// After a remount, a listing takes each cached object's mode and owner from the cache (the
/// same ETag and Last-Modified second), with no HEAD; a chmod by another mount changes
/// Last-Modified, so it shows.
#[test]
fn a_listing_after_a_remount_takes_cached_attributes_and_sees_other_changes() {
    let emu = TestEmulator::start();
    let cache = tempfile::tempdir().unwrap();
    // The default metadata TTL (`start` sets none, so every stat asks COS).
    let cached = ["--data-cache", cache.path().to_str().unwrap()];
    {
        let other = Mount::start(&emu, &[]);
        std::fs::create_dir(other.join("d")).unwrap();
        for i in 0..20 {
            std::fs::write(other.join(&format!("d/f{i}")), b"x").unwrap();
        }
        let f3 = other.join("d/f3");
        std::fs::set_permissions(&f3, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    // Metadata is remembered only when read two seconds after the change (see `Attrs`).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut m = Mount::start(&emu, &cached);
    let before = modes(&m.join("d"));
    assert!(
        before.contains(&("-rw-------".into(), "f3".into())),
        "{before:?}"
    );
    for i in 0..20 {
        assert_eq!(std::fs::read(m.join(&format!("d/f{i}"))).unwrap(), b"x");
    }
    m.unmount();

    let m = Mount::start(&emu, &cached);
    let heads = emu.op_count("head");
    assert_eq!(modes(&m.join("d")), before, "the same listing");
    // Only the directory itself is asked about (its lookup: `d` and its marker `d/`), not
    // its 20 files.
    assert!(
        emu.op_count("head") <= heads + 2,
        "{} HEADs",
        emu.op_count("head") - heads
    );
    drop(m);

    // Another mount changes a mode: Last-Modified moves, so the cache is not used for it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    {
        let other = Mount::start(&emu, &[]);
        let f3 = other.join("d/f3");
        std::fs::set_permissions(&f3, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    }
    let m = Mount::start(&emu, &cached);
    let after = modes(&m.join("d"));
    assert!(
        after.contains(&("-rw-r-----".into(), "f3".into())),
        "{after:?}"
    );
}

#[test]
fn a_changed_object_never_serves_old_bytes_and_a_damaged_block_is_fetched_again() {
    // Served by passthrough (the file is checked before the kernel gets it) and through
    // cosmount (every block checked as it is read).
    for extra in [&[][..], &["--no-passthrough"][..]] {
        let emu = TestEmulator::start();
        let cache = tempfile::tempdir().unwrap();
        put_external(&emu, "f", &pattern(3 * MIB, 1));
        let mut m = start(&emu, cache.path(), extra);
        assert!(std::fs::read(m.join("f")).unwrap() == pattern(3 * MIB, 1));
        // Remounted, the cache holds every block: a read-only open is passthrough.
        m.unmount();
        let m = start(&emu, cache.path(), extra);
        let before = std::fs::File::open(m.join("f")).unwrap();
        // Another client replaces it: the next open reads the new version, also while a
        // descriptor opened before reads the old one by passthrough (the kernel ties that
        // inode to the old version's file, so the new open gets a new inode).
        put_external(&emu, "f", &pattern(3 * MIB, 2));
        drop_page_cache();
        assert!(std::fs::read(m.join("f")).unwrap() == pattern(3 * MIB, 2));
        drop_page_cache();
        let mut buf = vec![0u8; 3 * MIB];
        std::os::unix::fs::FileExt::read_exact_at(&before, &mut buf, 0).unwrap();
        // By passthrough it reads the version it opened, from that version's file; through
        // cosmount, a descriptor that returned no byte yet reads the new version.
        let seed = if extra.is_empty() { 1 } else { 2 };
        assert!(
            buf == pattern(3 * MIB, seed),
            "the descriptor opened before"
        );
        drop(before);
        // Damage every cached data file while no mount uses the cache; reads still return
        // the right bytes.
        drop(m);
        for e in std::fs::read_dir(cache.path().join("v1")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "data") {
                let mut bytes = std::fs::read(&p).unwrap();
                for b in bytes.iter_mut().skip(1000).step_by(MIB) {
                    *b ^= 0xff;
                }
                std::fs::write(&p, bytes).unwrap();
            }
        }
        drop_page_cache();
        let m = start(&emu, cache.path(), extra);
        let gets = emu.op_count("get");
        assert!(std::fs::read(m.join("f")).unwrap() == pattern(3 * MIB, 2));
        assert!(
            emu.op_count("get") > gets,
            "the damaged blocks were fetched again"
        );
        assert!(m.log_text().contains("damaged"), "{}", m.log_text());
    }
}

#[test]
fn the_bound_holds_and_the_cache_is_one_mounts() {
    let emu = TestEmulator::start();
    let cache = tempfile::tempdir().unwrap();
    for i in 0..4 {
        put_external(&emu, &format!("f{i}"), &pattern(10 * MIB, i));
    }
    let m = start(&emu, cache.path(), &["--max-cache-size", "16M"]);
    for i in 0..4 {
        assert!(std::fs::read(m.join(&format!("f{i}"))).unwrap() == pattern(10 * MIB, i));
    }
    let out = Command::new("du")
        .args(["-sk"])
        .arg(cache.path())
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib <= 17 * 1024, "the cache holds {kib} KiB, bound 16 MiB");
    // A second mount on the same cache directory is refused with one line.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(common::mount::cosmount_bin())
        .arg(&emu.config.buckets[0])
        .arg(other.path())
        .args(["--endpoint", &emu.endpoint(), "--foreground"])
        .arg("--data-cache")
        .arg(cache.path())
        .env("COS_SECRET_ID", &emu.config.secret_id)
        .env("COS_SECRET_KEY", emu.config.secret_key.expose())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("in use by another mount"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A tmpfs of a few MiB as the cache directory: the cache fills the disk.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new() -> Self {
        let d = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(d.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a small tmpfs (the tests run as root)");
        SmallDisk(d)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_or_a_removed_cache_only_sends_reads_to_cos() {
    let emu = TestEmulator::start();
    let big = pattern(12 * MIB, 4);
    put_external(&emu, "big", &big);
    let disk = SmallDisk::new();
    // The bound is above what the disk holds: writes to the cache fail once it is full.
    let m = start(&emu, disk.0.path(), &["--max-cache-size", "64M"]);
    assert!(std::fs::read(m.join("big")).unwrap() == big);
    drop_page_cache();
    assert!(std::fs::read(m.join("big")).unwrap() == big, "read again");
    // The directory removed under the mount.
    let cache = tempfile::tempdir().unwrap();
    let m2 = start(&emu, cache.path(), &[]);
    std::fs::remove_dir_all(cache.path()).unwrap();
    assert!(std::fs::read(m2.join("big")).unwrap() == big);
    drop_page_cache();
    assert!(std::fs::read(m2.join("big")).unwrap() == big);
    assert!(
        m2.log_text().contains("reading from COS instead"),
        "{}",
        m2.log_text()
    );
}

/// Stops the mount's process (SIGSTOP) until dropped: a read that still completes did not go
/// through cosmount.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Self {
        assert!(pid > 0);
        // A signal, not a `kill` process: forking while a thread waits on the mount can hang.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// Reads `len` bytes of `f` from its start on another thread, or `None` if that takes more
/// than 20 s (the read waits for a stopped mount).
fn read_without_waiting(f: std::fs::File, len: usize) -> Option<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        let r = f.read_exact_at(&mut buf, 0).map(|_| buf);
        // Closed before the answer, so that the caller's next open finds no passthrough
        // descriptor left (it would get ETXTBSY opening the file for writing).
        drop(f);
        let _ = tx.send(r);
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .ok()
        .map(|r| r.expect("the read succeeds"))
}

/// A program that reads a file by passthrough, closes it and at once opens it for writing is
/// not refused: the kernel sends the RELEASE after `close` has returned, and the open waits
/// for releases on their way before it calls the file busy.
#[test]
fn writing_a_file_right_after_reading_it_by_passthrough_is_not_refused() {
    let emu = TestEmulator::start();
    let cache = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("f{i:02}"), pattern(64 * 1024 + i, i as u64)))
        .collect();
    let client = emu.client();
    for (name, data) in &files {
        let put = PutObject::new(name.as_str(), Body::Bytes(Bytes::from(data.clone())));
        runtime().block_on(client.put_object(put)).unwrap();
    }
    let mut m = start(&emu, cache.path(), &[]);
    for (name, data) in &files {
        assert!(std::fs::read(m.join(name)).unwrap() == *data);
    }
    m.unmount();
    let m = start(&emu, cache.path(), &[]);
    let mut refused = Vec::new();
    for (name, data) in &files {
        assert!(std::fs::read(m.join(name)).unwrap() == *data);
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .and_then(|mut w| std::io::Write::write_all(&mut w, b"!"));
        if let Err(e) = appended {
            refused.push(format!("{name}: {e}"));
        }
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
    let (name, data) = &files[7];
    assert!(std::fs::read(m.join(name)).unwrap() == [data.as_slice(), b"!"].concat());
}

#[test]
fn a_file_the_cache_holds_whole_is_read_by_the_kernel_without_the_mount() {
    let emu = TestEmulator::start();
    let cache = tempfile::tempdir().unwrap();
    let data = pattern(9 * MIB + 17, 3);
    put_external(&emu, "whole", &data);
    put_external(&emu, "other", &pattern(10 * MIB, 4));
    let mut m = start(&emu, cache.path(), &["--max-cache-size", "16M"]);
    assert!(std::fs::read(m.join("whole")).unwrap() == data);
    m.unmount();
    let mut m = start(&emu, cache.path(), &["--max-cache-size", "16M"]);

    // A read-only open of a file cached whole: passthrough. With the mount stopped and the
    // page cache dropped, its bytes still come (from the cache's file, by the kernel).
    let f = std::fs::File::open(m.join("whole")).unwrap();
    drop_page_cache();
    let got = {
        let _stopped = Stopped::new(m.pid());
        read_without_waiting(f.try_clone().unwrap(), data.len())
    };
    assert!(got.expect("read without the mount") == data);

    // Another read-only open shares the backing file. Opening it for writing, or truncating
    // it, is refused while they are open (the kernel would write the cache's file without
    // the mount): ETXTBSY, as for a running program.
    let g = std::fs::File::open(m.join("whole")).unwrap();
    let busy = std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("whole"))
        .unwrap_err();
    assert_eq!(busy.raw_os_error(), Some(libc::ETXTBSY), "{busy}");
    let t = Command::new("truncate")
        .args(["-s", "0"])
        .arg(m.join("whole"))
        .output()
        .unwrap();
    assert!(!t.status.success(), "truncate while read by passthrough");

    // They keep the version they opened, even once the cache evicts it (another read fills
    // the 16 MiB).
    assert!(std::fs::read(m.join("other")).unwrap() == pattern(10 * MIB, 4));
    drop_page_cache();
    for d in [&f, &g] {
        let mut buf = vec![0u8; data.len()];
        std::os::unix::fs::FileExt::read_exact_at(d, &mut buf, 0).unwrap();
        assert!(buf == data, "an open passthrough file keeps its bytes");
    }
    drop((f, g));

    // Once they are closed, it is written as usual; a file this mount writes is never read by
    // passthrough, so a reader that follows it (`tail -f`) never blocks its writers.
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("whole"))
        .and_then(|mut w| std::io::Write::write_all(&mut w, b"tail"))
        .unwrap();
    let follower = std::fs::File::open(m.join("whole")).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("whole"))
        .and_then(|mut w| std::io::Write::write_all(&mut w, b"more"))
        .unwrap();
    let mut longer = data.clone();
    longer.extend_from_slice(b"tailmore");
    let mut buf = vec![0u8; longer.len()];
    std::os::unix::fs::FileExt::read_exact_at(&follower, &mut buf, 0).unwrap();
    assert!(buf == longer, "the follower reads what was appended");
    assert!(
        !m.log_text().contains("passthrough refused"),
        "{}",
        m.log_text()
    );
    drop(follower);
    m.unmount();
}
