//! Reliability under faults, crashes and load, through real mounts over the emulator: copies
//! survive injected 503s, cut connections and delays with identical bytes; a stalled server is
//! cut by timeouts; kill -9 during a staging commit or a directory rename loses nothing; many
//! readers and writers run at once without deadlock, error or unbounded memory; SIGTERM with
//! files open commits them.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::mount::{Mount, is_mounted};
use common::{TestEmulator, pattern, runtime, sh};
use cosmount::cos::{Body, GetObject, ListObjects, ObjectClient, PutObject};

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn copies_survive_503s_cut_connections_and_delays() {
    let emu = TestEmulator::start();
    let src = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(src.path().join(format!("big{i}.bin")), pattern(40 << 20, i)).unwrap();
    }
    for i in 0..100 {
        let d = src.path().join(format!("small/d{}", i % 7));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}")),
            pattern(1000 + i * 333, 100 + i as u64),
        )
        .unwrap();
    }
    let m = Mount::start(&emu, &["--request-timeout", "5s"]);
    emu.emulator
        .faults()
        .set("any:503:0.1,get:reset:0.02,put:reset:0.02,put_part:reset:0.02,any:delay=30ms:0.05")
        .unwrap();
    let back = tempfile::tempdir().unwrap();
    sh(
        m.path(),
        &format!(
            "cp -r {src}/. ./tree && cp -r ./tree {back}/out && diff -r {src} {back}/out",
            src = src.path().display(),
            back = back.path().display()
        ),
    );
    let failures = emu.emulator.faults().injected_failures();
    emu.emulator.faults().clear();
    let log = m.log_text();
    let retries = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("retrying in"))
        .count();
    assert!(failures > 20, "faults were injected: {failures}");
    assert!(retries > 0, "retries are logged at warn level");
    assert!(
        retries as u64 <= failures,
        "each retry is logged once: {retries} retry lines for {failures} failures"
    );
    assert!(
        !log.contains("giving up"),
        "no request exhausted its retries"
    );
    eprintln!("faults: {failures} failures injected, {retries} retries logged, 200 MiB verified");
}

#[test]
fn a_stalled_server_is_cut_by_timeouts() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime()
        .block_on(c.put_object(PutObject::new(
            "f",
            Body::Bytes(Bytes::from_static(b"content")),
        )))
        .unwrap();
    let m = Mount::start(
        &emu,
        &["--request-timeout", "1s", "--retry-max-attempts", "2"],
    );
    emu.emulator.faults().set("get:stall:x1").unwrap();
    let t = Instant::now();
    assert_eq!(
        std::fs::read(m.join("f")).unwrap(),
        b"content",
        "retried after the timeout"
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    emu.emulator
        .faults()
        .set("head:stall:always,list:stall:always")
        .unwrap();
    let t = Instant::now();
    let e = std::fs::metadata(m.join("other")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "not waited on forever: {:?}",
        t.elapsed()
    );
    emu.emulator.faults().clear();
}

fn contents_under(emu: &TestEmulator, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let c = emu.client();
    runtime().block_on(async {
        let page = c
            .list_objects(ListObjects::new(prefix.to_string()))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for o in page.objects {
            let (_, b) = c
                .get_object_bytes(GetObject::new(o.key.clone()))
                .await
                .unwrap();
            out.insert(o.key[prefix.len()..].to_string(), b.to_vec());
        }
        out
    })
}

#[test]
fn kill_9_during_a_staging_commit_leaves_the_old_or_the_new_object() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let old = pattern(40 << 20, 1);
    runtime()
        .block_on(c.put_object(PutObject::new(
            "data",
            Body::Bytes(Bytes::from(old.clone())),
        )))
        .unwrap();
    let mut m = Mount::start(&emu, &["--part-size", "4M", "--max-concurrency", "2"]);
    // Change the middle: the commit copies unchanged parts server-side and uploads the rest.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("data"))
        .unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(20 << 20)).unwrap();
    f.write_all(&[0xAB; 100_000]).unwrap();
    emu.emulator
        .faults()
        .set("part_copy:delay=200ms:always,put_part:delay=200ms:always")
        .unwrap();
    emu.emulator.reset_stats();
    let closer = std::thread::spawn(move || drop(f));
    let deadline = Instant::now() + Duration::from_secs(30);
    while emu.op_count("part_copy") + emu.op_count("put_part") < 2 {
        assert!(Instant::now() < deadline, "the commit never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    m.kill9();
    let _ = closer.join();
    emu.emulator.faults().clear();
    let (_, now) = runtime()
        .block_on(c.get_object_bytes(GetObject::new("data")))
        .unwrap();
    let mut new = old.clone();
    new[20 << 20..(20 << 20) + 100_000].fill(0xAB);
    assert!(
        now[..] == old[..] || now[..] == new[..],
        "the object is whole: old or new"
    );
}

#[test]
fn kill_9_during_a_directory_rename_keeps_every_object_reachable() {
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "mkdir -p dir/sub && for i in $(seq 1 40); do echo \"file $i\" > dir/f$i; done && echo deep > dir/sub/deep",
    );
    let before = contents_under(&emu, "dir/");
    assert_eq!(before.len(), 43, "40 files, sub/deep and the two markers");
    emu.emulator.faults().set("copy:delay=50ms:always").unwrap();
    emu.emulator.reset_stats();
    let mnt = m.path().to_path_buf();
    let mv = std::thread::spawn(move || {
        let _ = std::process::Command::new("mv")
            .arg(mnt.join("dir"))
            .arg(mnt.join("moved"))
            .output();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = emu.client();
    loop {
        let copied = runtime()
            .block_on(c.list_objects(ListObjects::new("moved/")))
            .unwrap()
            .objects
            .len();
        if copied >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the rename never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    m.kill9();
    let _ = mv.join();
    emu.emulator.faults().clear();
    let old = contents_under(&emu, "dir/");
    let new = contents_under(&emu, "moved/");
    assert!(
        !new.is_empty(),
        "the kill happened in the middle of the copies"
    );
    for (name, body) in &before {
        let found = old.get(name).or(new.get(name));
        assert_eq!(
            found,
            Some(body),
            "{name} is reachable under the old or the new name"
        );
    }
}

#[test]
fn sixteen_readers_and_writers_with_listings_running() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--part-size", "1M", "--max-concurrency", "4"]);
    std::fs::create_dir(m.join("w")).unwrap();
    std::fs::write(m.join("shared"), pattern(3 << 20, 0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let root = m.path().to_path_buf();
    let mut threads = Vec::new();
    for t in 0..16u64 {
        let (stop, ops, root) = (stop.clone(), ops.clone(), root.clone());
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let size = ((t * 7919 + i * 104729) % (3 << 20)) as usize;
                if t % 2 == 0 {
                    let p = root.join(format!("w/t{t}"));
                    let data = pattern(size, t * 1000 + i);
                    std::fs::write(&p, &data).map_err(|e| format!("write {p:?}: {e}"))?;
                    let back = std::fs::read(&p).map_err(|e| format!("read {p:?}: {e}"))?;
                    if back != data {
                        let first = back.iter().zip(&data).position(|(a, b)| a != b);
                        return Err(format!(
                            "{p:?}: read back different bytes: {} bytes instead of {}, first difference at {first:?}",
                            back.len(),
                            data.len()
                        ));
                    }
                } else if t % 4 == 1 {
                    // The same file: whole replacements, whole reads of some version.
                    let p = root.join("shared");
                    if i % 2 == 0 {
                        std::fs::write(&p, pattern(size, 7)).map_err(|e| format!("write shared: {e}"))?;
                    } else {
                        // Descriptors of one mount share the file (as on a local disk), so a
                        // reader sees writers' bytes before they are committed, and writers
                        // that truncate it under each other interleave; what must hold is that
                        // reads work (or, when the object is replaced while open, fail cleanly)
                        // and that the stored object holds only bytes some writer wrote where
                        // it wrote them, or the zeros of a hole (checked at the end).
                        match std::fs::read(&p) {
                            Ok(_) => {}
                            Err(e) if matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ESTALE)) => {}
                            Err(e) => return Err(format!("read shared: {e}")),
                        }
                    }
                } else {
                    let out = std::process::Command::new("bash")
                        .arg("-c")
                        .arg(if t % 4 == 3 { "ls -lR . >/dev/null" } else { "find . -type f >/dev/null" })
                        .current_dir(&root)
                        .output()
                        .map_err(|e| e.to_string())?;
                    if !out.status.success() {
                        let err = String::from_utf8_lossy(&out.stderr).to_string();
                        // A file replaced or removed between listing and stat is a race of
                        // the workload, not an error of the mount.
                        if !err.lines().all(|l| l.contains("No such file")) {
                            return Err(format!("listing: {err}"));
                        }
                    }
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in threads {
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "a thread is stuck: deadlock?");
            std::thread::sleep(Duration::from_millis(20));
        }
        t.join().unwrap().unwrap();
    }
    let (_, stored) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("shared")))
        .unwrap();
    let written = pattern(3 << 20, 7);
    assert!(
        stored[..] == pattern(3 << 20, 0)[..]
            || (stored.len() <= written.len()
                && stored.iter().zip(&written).all(|(s, w)| s == w || *s == 0)),
        "the stored object holds only what the writers wrote, at their offsets"
    );
    let rss = peak_rss_kib(m.pid());
    let log = m.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        rss > 0 && rss < 512 * 1024,
        "peak RSS {rss} KiB stays bounded"
    );
    eprintln!(
        "load: {} operations by 16 threads in 8 s; peak RSS {} MiB",
        ops.load(Ordering::Relaxed),
        rss / 1024
    );
}

#[test]
fn sigterm_with_files_open_for_writing_commits_them_when_closed() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("open-at-unmount")).unwrap();
    f.write_all(&pattern(10 << 20, 3)).unwrap();
    // SIGTERM: the mount is busy, so it is detached lazily and serves open files until closed.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(m.pid().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(m.path()) {
        assert!(Instant::now() < deadline, "SIGTERM did not unmount");
        std::thread::sleep(Duration::from_millis(20));
    }
    f.write_all(b"tail").unwrap();
    drop(f);
    let mut expected = pattern(10 << 20, 3);
    expected.extend_from_slice(b"tail");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((_, b)) =
            runtime().block_on(c.get_object_bytes(GetObject::new("open-at-unmount")))
            && b[..] == expected[..]
        {
            break;
        }
        assert!(Instant::now() < deadline, "the file was not committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        emu.emulator.upload_count(common::BUCKET),
        0,
        "no upload left behind"
    );
}

#[test]
fn hostile_keys_never_crash_the_mount() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let long = "L".repeat(300);
    let keys = [
        "pre".to_string(),
        "pre/".to_string(),
        "pre//double".to_string(),
        "pre/a\nb".to_string(),
        "pre/tab\there".to_string(),
        "pre/\u{1}ctl".to_string(),
        format!("pre/{long}"),
        format!("pre/{}", "x".repeat(800)),
        "pre/../up".to_string(),
        "pre/./here".to_string(),
        "pre/ok".to_string(),
        "pre/dir/../x".to_string(),
        "pre/ sp ".to_string(),
    ];
    runtime().block_on(async {
        for k in &keys {
            c.put_object(PutObject::new(
                k.clone(),
                Body::Bytes(Bytes::from_static(b"hostile")),
            ))
            .await
            .unwrap();
        }
    });
    let m = Mount::start(&emu, &["--prefix", "pre"]);
    let listing = sh(m.path(), "ls -la; ls -laR .; find . | wc -l");
    assert!(listing.contains("ok"));
    assert_eq!(std::fs::read(m.join("a\nb")).unwrap(), b"hostile");
    assert_eq!(std::fs::read(m.join("\u{1}ctl")).unwrap(), b"hostile");
    assert_eq!(std::fs::read(m.join(" sp ")).unwrap(), b"hostile");
    assert!(
        std::fs::metadata(m.join(&long)).is_err(),
        "a 300-byte name is skipped"
    );
    assert!(m.join("dir").is_dir());
    assert!(!m.log_text().contains("panicked"));
    // The mount still works.
    std::fs::write(m.join("after"), b"fine").unwrap();
    assert_eq!(std::fs::read(m.join("after")).unwrap(), b"fine");
}
