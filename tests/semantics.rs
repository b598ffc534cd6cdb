//! One test per example in docs/SEMANTICS.md (the document names each test). Real mounts over
//! the emulator; "another client" is our COS client or the official SDK talking to the same
//! emulator directly.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::Duration;

use bytes::Bytes;
use common::mount::Mount;
use common::{TestEmulator, pattern, runtime, sh};
use cosmount::cos::{Body, CosClient, GetObject, ObjectClient, PutObject};

fn remote(c: &CosClient, key: &str) -> Option<Vec<u8>> {
    match runtime().block_on(c.get_object_bytes(GetObject::new(key))) {
        Ok((_, b)) => Some(b.to_vec()),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("GET {key}: {e}"),
    }
}

#[test]
fn writes_become_visible_to_others_at_close_never_partially() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    std::fs::write(m.join("doc"), b"old").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join("doc"))
        .unwrap();
    f.write_all(&pattern(5 << 20, 1)).unwrap();
    // Parts may already be uploading, but other clients still see the old object.
    assert_eq!(remote(&c, "doc").unwrap(), b"old");
    let mut new = std::fs::File::create(m.join("fresh")).unwrap();
    new.write_all(b"not yet").unwrap();
    assert_eq!(
        remote(&c, "fresh"),
        None,
        "a new file appears only at its first commit"
    );
    drop(f);
    drop(new);
    assert_eq!(remote(&c, "doc").unwrap(), pattern(5 << 20, 1));
    assert_eq!(remote(&c, "fresh").unwrap(), b"not yet");
}

#[test]
fn fsync_makes_data_durable_before_close() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("log")).unwrap();
    f.write_all(b"line 1\n").unwrap();
    f.sync_all().unwrap();
    assert_eq!(remote(&c, "log").unwrap(), b"line 1\n");
    f.write_all(b"line 2\n").unwrap();
    f.sync_all().unwrap();
    assert_eq!(remote(&c, "log").unwrap(), b"line 1\nline 2\n");
}

#[test]
fn o_trunc_alone_is_committed_when_the_file_is_released() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    std::fs::write(m.join("f"), b"content").unwrap();
    sh(m.path(), ": > f");
    // release is asynchronous to close(2): poll briefly.
    let mut empty = false;
    for _ in 0..200 {
        if remote(&c, "f").as_deref() == Some(b"".as_slice()) {
            empty = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(empty, "the truncation reached COS");
    assert_eq!(std::fs::metadata(m.join("f")).unwrap().len(), 0);
}

#[test]
fn a_running_program_is_never_truncated() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let mut m = Mount::start(&emu, &[]);
    let program = std::fs::read(which("sleep")).unwrap();
    let path = m.join("prog");
    std::fs::write(&path, &program).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut running = std::process::Command::new(&path).arg("60").spawn().unwrap();
    // The kernel refuses a writable open itself. It checks `O_RDONLY|O_TRUNC` only after the
    // file system's OPEN, which truncates (atomic O_TRUNC): the mount must refuse that one.
    for (what, write) in [("O_RDONLY|O_TRUNC", false), ("O_WRONLY|O_TRUNC", true)] {
        let e = std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_TRUNC)
            .open(&path)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ETXTBSY), "{what}: {e}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running.try_wait().unwrap().is_none(),
        "the program still runs (a truncated text faults it)"
    );
    assert!(
        remote(&c, "prog").unwrap() == program,
        "COS still has the whole program (the refused open's release commits nothing)"
    );
    running.kill().unwrap();
    running.wait().unwrap();
    // Once it has exited, the file may be truncated again.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_TRUNC)
        .open(m.join("prog"))
        .map(drop)
        .unwrap_or_else(|e| panic!("O_RDONLY|O_TRUNC after the program exited: {e}"));
    // The unmount waits for the release's commit.
    m.unmount();
    assert_eq!(
        remote(&c, "prog").unwrap(),
        b"",
        "the last open truncated it"
    );
}

/// The path of a program on $PATH.
fn which(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

#[test]
fn random_writes_appends_and_truncation_work_on_existing_objects() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let base = pattern(24 << 20, 3);
    runtime()
        .block_on(c.put_object(PutObject::new(
            "big",
            Body::Bytes(Bytes::from(base.clone())),
        )))
        .unwrap();
    let m = Mount::start(&emu, &["--part-size", "8M"]);
    emu.emulator.reset_stats();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("big"))
        .unwrap();
    f.write_all(b"appended").unwrap();
    drop(f);
    let mut expected = base.clone();
    expected.extend_from_slice(b"appended");
    assert_eq!(remote(&c, "big").unwrap(), expected);
    assert!(
        emu.op_count("part_copy") >= 2,
        "unchanged parts were copied server-side: {:?}",
        emu.emulator.stats()
    );
    assert!(
        emu.op_count("get") <= 2,
        "the unchanged 16 MiB were not downloaded: {:?}",
        emu.emulator.stats()
    );
    // Overwrite in the middle through a read-write handle, read back through it.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("big"))
        .unwrap();
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.write_all(b"MIDDLE").unwrap();
    f.seek(SeekFrom::Start((10 << 20) - 2)).unwrap();
    let mut buf = [0u8; 10];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[2..8], b"MIDDLE");
    f.set_len(1000).unwrap();
    drop(f);
    assert_eq!(remote(&c, "big").unwrap(), base[..1000].to_vec());
}

#[test]
fn unlink_while_open_discards_pending_writes() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("tmp")).unwrap();
    f.write_all(b"scratch").unwrap();
    std::fs::remove_file(m.join("tmp")).unwrap();
    drop(f);
    assert_eq!(remote(&c, "tmp"), None);
    assert!(std::fs::metadata(m.join("tmp")).is_err());
}

#[test]
fn other_writers_are_seen_after_the_metadata_ttl() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &["--metadata-ttl", "2s"]);
    std::fs::write(m.join("shared"), b"mine").unwrap();
    runtime()
        .block_on(c.put_object(PutObject::new(
            "shared",
            Body::Bytes(Bytes::from_static(b"theirs, longer")),
        )))
        .unwrap();
    assert_eq!(
        std::fs::metadata(m.join("shared")).unwrap().len(),
        4,
        "cached within the TTL"
    );
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(std::fs::read(m.join("shared")).unwrap(), b"theirs, longer");
}

#[test]
fn implicit_directories_exist_while_they_have_objects() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime()
        .block_on(c.put_object(PutObject::new(
            "implicit/only",
            Body::Bytes(Bytes::from_static(b"x")),
        )))
        .unwrap();
    let m = Mount::start(&emu, &["--metadata-ttl", "0s", "--negative-ttl", "0s"]);
    assert!(m.join("implicit").is_dir());
    std::fs::remove_file(m.join("implicit/only")).unwrap();
    assert!(
        !m.join("implicit").exists(),
        "no marker: the directory goes with its last object"
    );
    std::fs::create_dir(m.join("made")).unwrap();
    std::fs::write(m.join("made/f"), b"x").unwrap();
    std::fs::remove_file(m.join("made/f")).unwrap();
    assert!(
        m.join("made").is_dir(),
        "mkdir stored a marker: the directory stays"
    );
    let e = std::fs::remove_dir(m.path().join("nonexistent")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    std::fs::write(m.join("made/g"), b"x").unwrap();
    let e = std::fs::remove_dir(m.join("made")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
}

#[test]
fn a_file_and_a_directory_of_the_same_name_show_the_directory() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        c.put_object(PutObject::new(
            "x",
            Body::Bytes(Bytes::from_static(b"file")),
        ))
        .await
        .unwrap();
        c.put_object(PutObject::new(
            "x/y",
            Body::Bytes(Bytes::from_static(b"inner")),
        ))
        .await
        .unwrap();
    });
    let m = Mount::start(&emu, &[]);
    assert!(m.join("x").is_dir());
    assert_eq!(sh(m.path(), "ls"), "x\n");
    assert_eq!(std::fs::read(m.join("x/y")).unwrap(), b"inner");
}

#[test]
fn directory_rename_moves_every_key_and_refuses_non_empty_targets() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "mkdir -p src/a/b && echo 1 > src/a/b/f && echo 2 > src/g && mkdir dst && mv src moved",
    );
    let keys: Vec<String> = runtime()
        .block_on(c.list_objects(cosmount::cos::ListObjects::new("")))
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            "dst/",
            "moved/",
            "moved/a/",
            "moved/a/b/",
            "moved/a/b/f",
            "moved/g"
        ]
    );
    sh(m.path(), "echo 3 > dst/x");
    let e = std::fs::rename(m.join("moved"), m.join("dst")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    let e = std::fs::rename(m.join("moved"), m.join("moved/a/inside")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn attributes_round_trip() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "echo x > f && touch -a -d '2000-01-01' f && touch -m -d '2010-01-01 00:00:00.25' f",
    );
    let meta = std::fs::metadata(m.join("f")).unwrap();
    assert_eq!(meta.mtime(), 1262304000);
    assert_eq!(meta.mtime_nsec(), 250_000_000, "sub-second mtimes are kept");
    assert_eq!(meta.atime(), 946684800, "atime is kept");
    // The mount root keeps attributes in memory only.
    sh(m.path(), "chmod 700 . && touch -d '2011-01-01' .");
    assert_eq!(std::fs::metadata(m.path()).unwrap().mode() & 0o7777, 0o700);
}

#[test]
fn hard_links_are_refused() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::write(m.join("f"), b"x").unwrap();
    let e = std::fs::hard_link(m.join("f"), m.join("g")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
}

#[test]
fn names_that_cannot_be_keys_are_refused() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    let long = "n".repeat(256);
    let e = std::fs::write(m.join(&long), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    // Every name fits, but the key would be longer than COS's 850 bytes.
    let deep: std::path::PathBuf = (0..4).map(|i| format!("{i}{}", "d".repeat(199))).collect();
    std::fs::create_dir_all(m.path().join(&deep)).unwrap();
    let e = std::fs::write(m.path().join(&deep).join("f".repeat(60)), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    std::fs::write(m.path().join(&deep).join("f".repeat(40)), b"x").unwrap();
    // Non-UTF-8 names cannot become object keys.
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff");
    let e = std::fs::write(m.path().join(bad), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn pages_stay_cached_while_the_object_is_unchanged() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime()
        .block_on(c.put_object(PutObject::new(
            "f",
            Body::Bytes(Bytes::from(pattern(1 << 20, 4))),
        )))
        .unwrap();
    let m = Mount::start(&emu, &[]);
    assert_eq!(std::fs::read(m.join("f")).unwrap(), pattern(1 << 20, 4));
    let gets = emu.op_count("get");
    assert_eq!(std::fs::read(m.join("f")).unwrap(), pattern(1 << 20, 4));
    assert_eq!(
        emu.op_count("get"),
        gets,
        "the second read came from the page cache"
    );
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0)
        .open(m.join("f"))
        .unwrap();
}

#[test]
fn a_child_closing_an_inherited_descriptor_does_not_publish_a_partial_file() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("growing")).unwrap();
    f.write_all(b"first half, ").unwrap();
    // fork + exec: the child closes its copy of the descriptor (a FUSE flush).
    let status = std::process::Command::new("true").status().unwrap();
    assert!(status.success());
    assert_eq!(
        remote(&c, "growing"),
        None,
        "the child's close published nothing"
    );
    f.write_all(b"second half").unwrap();
    drop(f);
    assert_eq!(remote(&c, "growing").unwrap(), b"first half, second half");
}

/// A change of content by a user who may not keep set-ID bits clears them, as on a local file
/// system: a write through the kernel's page cache (a read-write descriptor, where the kernel
/// clears them), a write-only descriptor's write (direct I/O, where the kernel asks the mount
/// to), and a truncation at open. The set-group-ID bit of a file without group execute stays,
/// and root keeps both. What `stat` shows at once is what COS stores.
#[test]
fn a_write_by_another_user_clears_set_id_bits() {
    let emu = TestEmulator::start();
    let client = emu.client();
    // allow_other: the writer is another user.
    let m = Mount::start(&emu, &["--allow-other"]);
    let stored = || {
        let info = runtime().block_on(client.head_object("f")).unwrap();
        let mode: u32 = info.user["mode"].parse().unwrap();
        format!("{:o}", mode & 0o7777)
    };
    let cases = [
        ("a write-only descriptor", "6777", "echo x >> f", "777"),
        (
            "a read-write descriptor",
            "6777",
            "exec 3<>f; echo x >&3",
            "777",
        ),
        ("a truncation at open", "6777", ": > f", "777"),
        ("no group execute", "2767", "echo x >> f", "2767"),
    ];
    for (how, before, cmd, after) in cases {
        sh(m.path(), &format!("echo hi > f && chmod {before} f"));
        sh(m.path(), &format!("su nobody -s /bin/sh -c '{cmd}'"));
        assert_eq!(sh(m.path(), "stat -c %a f").trim(), after, "{how}: stat");
        assert_eq!(stored(), after, "{how}: stored");
    }
    sh(m.path(), "chmod 6777 f && echo y >> f && : > f");
    assert_eq!(
        sh(m.path(), "stat -c %a f").trim(),
        "6777",
        "root keeps them"
    );
    assert_eq!(stored(), "6777");
}
