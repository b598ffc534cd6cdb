//! The write side through a real kernel FUSE mount over the emulator, checked against a local
//! directory and through Tencent's official SDK: cp -r, dd of 1 GiB (multipart), editing tools,
//! renames, attributes that persist across remounts, symlinks, tar round trips, SSE-C, EIO on
//! close when COS keeps failing, and kill -9 in the middle of a write.

mod common;

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::mount::Mount;
use common::{BUCKET, TestEmulator, md5_hex, pattern, runtime, sdk, sdk_ok, sh};
use cosmount::cos::{GetObject, ObjectClient};

/// A listing of a tree that two directories must share: path, type, mode, size, content hash.
fn tree_fingerprint(dir: &Path) -> String {
    sh(
        dir,
        "find . -mindepth 1 -printf '%P %y %m\\n' | sort; find . -type f -printf '%P %s\\n' | sort; find . -type f -print0 | sort -z | xargs -0 -r md5sum; find . -type l -printf '%P -> %l\\n' | sort",
    )
}

/// Runs the same shell script in a local directory and in the mount; both must succeed and
/// leave identical trees.
fn same_in_both(mount: &Path, script: &str) {
    let local = tempfile::tempdir().unwrap();
    let l = sh(local.path(), script);
    let m = sh(mount, script);
    assert_eq!(l, m, "outputs of the script differ");
    assert_eq!(tree_fingerprint(local.path()), tree_fingerprint(mount));
}

#[test]
fn cp_r_of_many_small_files_and_a_large_one() {
    let emu = TestEmulator::start();
    let src = tempfile::tempdir().unwrap();
    for i in 0..500 {
        let d = src.path().join(format!("d{}/e{}", i % 10, i % 3));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}.txt")),
            pattern(i * 37 % 20_000, i as u64),
        )
        .unwrap();
    }
    std::fs::write(src.path().join("large.bin"), pattern(300 << 20, 42)).unwrap();
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        &format!(
            "cp -r {}/. ./tree && diff -r {} ./tree",
            src.path().display(),
            src.path().display()
        ),
    );
    assert!(
        emu.op_count("initiate") >= 1,
        "the large file went up in parts"
    );
    assert_eq!(
        emu.emulator.upload_count(BUCKET),
        0,
        "no upload left behind"
    );
    drop(m);
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        &format!("diff -r {} ./tree", src.path().display()),
    );
    let back = tempfile::tempdir().unwrap();
    sh(
        m.path(),
        &format!(
            "cp -r ./tree {}/ && diff -r {} {}/tree",
            back.path().display(),
            src.path().display(),
            back.path().display()
        ),
    );
}

#[test]
fn dd_of_one_gib_is_a_multipart_upload_that_the_sdk_reads_back() {
    let emu = TestEmulator::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("gib");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..16 {
            f.write_all(&pattern(64 << 20, 1000 + i)).unwrap();
        }
    }
    let expected = sh(src.path(), "md5sum gib | cut -d' ' -f1");
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        &format!("dd if={} of=big bs=1M status=none", path.display()),
    );
    assert_eq!(std::fs::metadata(m.join("big")).unwrap().len(), 1 << 30);
    assert!(emu.op_count("put_part") >= 128, "8 MiB parts");
    assert_eq!(sdk_ok(&emu, &["md5", "big"]), expected);
}

#[test]
fn editing_tools_behave_as_on_a_local_disk() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    same_in_both(
        m.path(),
        r#"
        set -e
        printf 'alpha\nbeta\ngamma\n' > text
        sed -i 's/beta/BETA/' text
        echo appended >> text
        head -c 3000000 /dev/zero | tr '\0' 'a' > big
        echo tail >> big
        dd if=/dev/zero of=big bs=1 count=10 seek=1500000 conv=notrunc status=none
        truncate -s 2500000 big
        truncate -s 4000000 big
        cp big big2
        truncate -s 10 big2
        printf 'xyz' | dd of=text bs=1 seek=2 conv=notrunc status=none
        : > emptied
        echo data > emptied
        : > emptied
        cat text
        wc -c big big2 emptied
        md5sum big
        "#,
    );
}

#[test]
fn renames_of_files_and_directory_trees() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    same_in_both(
        m.path(),
        r#"
        set -e
        mkdir -p a/b/c a/empty
        for i in 1 2 3; do echo "file $i" > a/b/c/f$i; done
        echo top > a/top
        mv a/top a/top2
        mv a a2
        mv a2/b/c/f1 a2/f1-moved
        mkdir z && echo old > z/replaced && echo new > newer && mv newer z/replaced
        mkdir target && mv a2/empty target/
        rm -r a2/b
        ls -R
        cat z/replaced
        "#,
    );
    // The old names are gone from COS too.
    let page = runtime()
        .block_on(
            emu.client()
                .list_objects(cosmount::cos::ListObjects::new("a/")),
        )
        .unwrap();
    assert!(page.objects.is_empty(), "{:?}", page.objects);
    // rename(2) onto a non-empty directory fails; RENAME_NOREPLACE is honoured.
    sh(
        m.path(),
        "mkdir -p full/x && mkdir -p other && touch full/x/f",
    );
    let e = std::fs::rename(m.join("other"), m.join("full")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    let (ok, out) = common::sh_status(m.path(), "touch n1 n2 && mv --no-clobber n1 n2; ls n1");
    assert!(ok, "{out}");
    let e = std::fs::hard_link(m.join("n1"), m.join("hard")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EPERM),
        "hard links are refused"
    );
}

#[test]
fn chmod_chown_and_times_persist_across_remounts_and_show_in_cos() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "echo hi > f && mkdir d && chmod 751 f && chown 1234:5678 f && touch -d '2001-02-03 04:05:06' f && chmod 700 d",
    );
    drop(m);
    let m = Mount::start(&emu, &[]);
    let meta = std::fs::metadata(m.join("f")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o751);
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(meta.mtime(), 981173106);
    assert_eq!(
        std::fs::metadata(m.join("d")).unwrap().mode() & 0o7777,
        0o700
    );
    let listed = sh(m.path(), "ls -ln");
    assert!(listed.contains("-rwxr-x--x 1 1234 5678"), "{listed}");
    let head = sdk_ok(&emu, &["head", "f"]);
    let v: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(v["x-cos-meta-mode"], "33257");
    assert_eq!(v["x-cos-meta-uid"], "1234");
    assert_eq!(v["x-cos-meta-mtime"], "981173106");
    assert_eq!(std::fs::read_to_string(m.join("f")).unwrap(), "hi\n");
}

#[test]
fn symlinks_are_stored_as_cosfs_does() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        "echo target > t && ln -s t link && ln -s ../elsewhere/x dangling && mkdir d && ln -s ../t d/up",
    );
    assert_eq!(std::fs::read_link(m.join("link")).unwrap(), Path::new("t"));
    drop(m);
    let m = Mount::start(&emu, &[]);
    assert_eq!(std::fs::read_to_string(m.join("link")).unwrap(), "target\n");
    assert_eq!(
        std::fs::read_link(m.join("dangling")).unwrap(),
        Path::new("../elsewhere/x")
    );
    let types = sh(m.path(), "find . -type l | sort");
    assert_eq!(types, "./d/up\n./dangling\n./link\n");
    let (_, body) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("link")))
        .unwrap();
    assert_eq!(&body[..], b"t", "the body is the target");
    let head: serde_json::Value = serde_json::from_str(&sdk_ok(&emu, &["head", "link"])).unwrap();
    assert_eq!(head["x-cos-meta-mode"], "41471", "S_IFLNK|0777");
}

#[test]
fn tar_into_the_mount_and_back_is_byte_identical() {
    let emu = TestEmulator::start();
    let work = tempfile::tempdir().unwrap();
    sh(
        work.path(),
        r#"
        set -e
        mkdir -p src/a/b src/c
        for i in $(seq 1 40); do head -c $((i * 997)) /dev/urandom > src/a/f$i; done
        head -c 9000000 /dev/urandom > src/c/big
        echo script > src/c/run.sh && chmod 755 src/c/run.sh
        chmod 600 src/a/f1
        ln -s ../c/run.sh src/a/b/link
        find src -exec touch -h -d '2020-05-06 07:08:09' {} +
        tar --sort=name --format=gnu -cf in.tar -C src .
        "#,
    );
    let m = Mount::start(&emu, &[]);
    sh(
        m.path(),
        &format!("tar -xf {}/in.tar", work.path().display()),
    );
    sh(
        m.path(),
        &format!(
            "tar --sort=name --format=gnu -cf {}/out.tar .",
            work.path().display()
        ),
    );
    let a = std::fs::read(work.path().join("in.tar")).unwrap();
    let b = std::fs::read(work.path().join("out.tar")).unwrap();
    if a != b {
        let diff = sh(
            work.path(),
            "diff <(tar -tvf in.tar) <(tar -tvf out.tar) || true",
        );
        panic!("tar archives differ:\n{diff}");
    }
}

fn sse_c_key_file(dir: &Path) -> (std::path::PathBuf, String) {
    use base64::Engine;
    let key = [7u8; 32];
    let path = dir.join("sse-c.key");
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    std::fs::write(&path, &b64).unwrap();
    (path, b64)
}

#[test]
fn sse_c_keys_rotate_new_key_first_old_keys_still_read() {
    use base64::Engine;
    let b64 = |k: [u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let (old, new) = ([7u8; 32], [9u8; 32]);
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let old_file = dir.path().join("old.key");
    std::fs::write(&old_file, b64(old)).unwrap();
    let m = Mount::start(&emu, &["--sse-c-key-file", old_file.to_str().unwrap()]);
    let big = pattern(9 << 20, 3);
    std::fs::write(m.join("small"), b"written with the old key").unwrap();
    std::fs::write(m.join("big"), &big).unwrap();
    std::fs::write(m.join("kept"), b"stays on the old key").unwrap();
    drop(m);
    // The rotated key file, as s3fs's: the new key first, the old one after it.
    let both = dir.path().join("both.keys");
    std::fs::write(
        &both,
        format!("# new key first\n{}\n{}\n", b64(new), b64(old)),
    )
    .unwrap();
    let m = Mount::start(
        &emu,
        &[
            "--sse-c-key-file",
            both.to_str().unwrap(),
            "--part-size",
            "4M",
        ],
    );
    // Objects of the old key read (the key whose MD5 opens them), with ranges and whole.
    assert_eq!(
        std::fs::read(m.join("small")).unwrap(),
        b"written with the old key"
    );
    assert!(std::fs::read(m.join("big")).unwrap() == big);
    assert_eq!(sh(m.path(), "cat kept"), "stays on the old key");
    // New objects, rewrites and renames get the new key (a rename re-encrypts: its copy reads
    // the source with the old key); an append of a multipart file copies its old parts.
    sh(
        m.path(),
        "echo fresh > fresh && echo ' and rewritten' >> small && mv big moved && echo end >> moved",
    );
    let opens = |key: &str, k: [u8; 32]| {
        sdk(&emu, &["head", key, "--sse-c-key-b64", &b64(k)])
            .status
            .success()
    };
    for key in ["fresh", "small", "moved"] {
        assert!(opens(key, new), "{key} is encrypted with the new key");
        assert!(!opens(key, old), "{key} is no longer on the old key");
    }
    assert!(
        opens("kept", old) && !opens("kept", new),
        "untouched objects keep their key"
    );
    let mut moved = big.clone();
    moved.extend_from_slice(b"end\n");
    assert_eq!(
        sdk_ok(&emu, &["md5", "moved", "--sse-c-key-b64", &b64(new)]).trim(),
        md5_hex(&moved)
    );
    assert_eq!(
        std::fs::read(m.join("small")).unwrap(),
        b"written with the old key and rewritten\n"
    );
}

#[test]
fn an_sse_c_mount_writes_objects_only_the_key_opens() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let (key_file, b64) = sse_c_key_file(dir.path());
    let m = Mount::start(&emu, &["--sse-c-key-file", key_file.to_str().unwrap()]);
    let data = pattern(12 << 20, 5);
    std::fs::write(m.join("secret.bin"), &data).unwrap();
    std::fs::write(m.join("small"), b"tiny secret").unwrap();
    assert_eq!(std::fs::read(m.join("secret.bin")).unwrap(), data);
    sh(
        m.path(),
        "mv small renamed && chmod 600 renamed && mkdir d && mv secret.bin d/",
    );
    for key in ["renamed", "d/secret.bin"] {
        let denied = sdk(&emu, &["md5", key]);
        assert_eq!(
            denied.status.code(),
            Some(3),
            "{key} unreadable without the key"
        );
        let err: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
        assert_eq!(err["status"], 400);
        let head: serde_json::Value =
            serde_json::from_str(&sdk_ok(&emu, &["head", key, "--sse-c-key-b64", &b64])).unwrap();
        assert_eq!(
            head["x-cos-server-side-encryption-customer-algorithm"],
            "AES256"
        );
    }
    assert_eq!(
        sdk_ok(&emu, &["md5", "d/secret.bin", "--sse-c-key-b64", &b64]).trim(),
        md5_hex(&data)
    );
    let head: serde_json::Value =
        serde_json::from_str(&sdk_ok(&emu, &["head", "renamed", "--sse-c-key-b64", &b64])).unwrap();
    assert_eq!(
        head["x-cos-meta-mode"], "33152",
        "chmod kept through the copy"
    );
    drop(m);
    // A mount without the key cannot read them: EACCES, never wrong bytes.
    let m = Mount::start(&emu, &[]);
    let e = std::fs::read(m.join("renamed")).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EIO)),
        "{e}"
    );
    assert!(m.log_text().contains("SSE-C"), "one clear log line");
}

#[test]
fn failed_uploads_return_eio_from_close_and_fsync_and_keep_the_old_object() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--retry-max-attempts", "3"]);
    std::fs::write(m.join("keep"), b"version 1").unwrap();
    std::fs::write(m.join("other"), b"unrelated").unwrap();
    emu.emulator.faults().set("write:503:always").unwrap();

    // close(2) reports the failed PUT.
    let mut f = std::fs::File::create(m.join("keep")).unwrap();
    f.write_all(b"version 2 that must not half-appear").unwrap();
    let fd = f.into_raw_fd();
    // SAFETY: fd is a valid descriptor we own, closed exactly once.
    let rc = unsafe { libc::close(fd) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(rc, -1, "close must fail");
    assert_eq!(errno, Some(libc::EIO));

    // fsync(2) reports a failed multipart upload; the upload is aborted.
    let mut g = std::fs::File::create(m.join("big-new")).unwrap();
    g.write_all(&pattern(20 << 20, 9)).unwrap();
    let e = g.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    drop(g);

    emu.emulator.faults().clear();
    assert_eq!(
        std::fs::read(m.join("other")).unwrap(),
        b"unrelated",
        "the mount still serves"
    );
    let (_, body) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("keep")))
        .unwrap();
    assert_eq!(&body[..], b"version 1", "the old object is intact");
    assert!(
        runtime()
            .block_on(emu.client().head_object("big-new"))
            .unwrap_err()
            .is_not_found(),
        "nothing partial appears"
    );
    assert_eq!(
        emu.emulator.upload_count(BUCKET),
        0,
        "the upload was aborted"
    );
    assert!(m.log_text().contains("previous object is unchanged"));
}

/// A tmpfs of `mib` MiB mounted on `path` until dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(path: &Path, mib: u32) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a small tmpfs (the tests run as root)");
        SmallDisk(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The staging disk fills while a streamed file's parts go up from memory and into the staging
/// file behind the writer: the failure reaches the writer (a write or fsync fails with an
/// error), the old object stays, and the upload is aborted.
#[test]
fn a_full_staging_disk_fails_the_write_and_keeps_the_old_object() {
    let emu = TestEmulator::start();
    let old = pattern(3 << 20, 1);
    runtime()
        .block_on(emu.client().put_object(cosmount::cos::PutObject::new(
            "f",
            cosmount::cos::Body::Bytes(old.clone().into()),
        )))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _disk = SmallDisk::mount(&dir.path().join("cache"), 3);
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let m = Mount::start_at(&emu, &["--part-size", "1M"], &[], dir, mountpoint);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join("f"))
        .unwrap();
    let chunk = pattern(1 << 20, 2);
    let wrote_all = (0..12).all(|_| f.write_all(&chunk).is_ok());
    let synced = f.sync_all();
    assert!(
        !wrote_all || synced.is_err(),
        "12 MiB went through a 3 MiB staging disk without an error"
    );
    drop(f);
    let (_, body) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("f")))
        .unwrap();
    assert!(body[..] == old[..], "the old object is intact");
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.emulator.upload_count(BUCKET) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        emu.emulator.upload_count(BUCKET),
        0,
        "the upload was aborted"
    );
}

/// The kernel sends a close's release after close(2) has returned, so an unmount can come
/// while the release still works: here, the commit of a lone O_TRUNC (made at release) and the
/// abort of an unlinked file's multipart upload, both slowed down by the server. The mount
/// finishes them before it exits.
#[test]
fn an_unmount_right_after_close_finishes_what_the_releases_began() {
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &["--part-size", "1M"]);
    std::fs::write(m.join("emptied"), b"old content").unwrap();
    emu.emulator
        .faults()
        .set("put:delay=1s:1,abort:delay=1s:1")
        .unwrap();
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.join("emptied"))
            .unwrap(),
    );
    let mut f = std::fs::File::create(m.join("gone")).unwrap();
    f.write_all(&pattern(3 << 20, 4)).unwrap();
    std::fs::remove_file(m.join("gone")).unwrap();
    drop(f);
    m.unmount();
    emu.emulator.faults().clear();
    let (_, body) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("emptied")))
        .unwrap();
    assert!(body.is_empty(), "the O_TRUNC reached COS before the exit");
    assert_eq!(
        emu.emulator.upload_keys(BUCKET),
        Vec::<String>::new(),
        "the removed file's upload was aborted before the exit"
    );
}

#[test]
fn kill_9_during_a_large_write_leaves_the_old_object_or_none() {
    let emu = TestEmulator::start();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("src");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..10 {
            f.write_all(&pattern(50 << 20, 77 + i)).unwrap();
        }
    }
    let mut m = Mount::start(&emu, &[]);
    std::fs::write(m.join("victim"), b"old content").unwrap();
    let mut dd = std::process::Command::new("dd")
        .arg(format!("if={}", path.display()))
        .arg(format!("of={}", m.join("victim").display()))
        .args(["bs=1M", "status=none"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while emu.op_count("put_part") < 5 {
        assert!(Instant::now() < deadline, "the write never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    m.kill9();
    let _ = dd.kill();
    let _ = dd.wait();
    let client = emu.client();
    match runtime().block_on(client.get_object_bytes(GetObject::new("victim"))) {
        Ok((_, body)) => assert_eq!(&body[..], b"old content", "no partial object"),
        Err(e) => assert!(e.is_not_found(), "{e}"),
    }
    // The interrupted multipart upload is still there; cleanup-uploads finds and aborts it.
    assert!(emu.emulator.upload_count(BUCKET) >= 1);
    let run = |apply: bool| {
        let mut cmd = std::process::Command::new(common::mount::cosmount_bin());
        cmd.args([
            "cleanup-uploads",
            BUCKET,
            "--endpoint",
            &emu.endpoint(),
            "--older-than",
            "0s",
        ])
        .env("COS_SECRET_ID", &emu.config.secret_id)
        .env("COS_SECRET_KEY", emu.config.secret_key.expose());
        if apply {
            cmd.arg("--apply");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dry = run(false);
    assert!(dry.contains("would abort victim"), "{dry}");
    assert!(emu.emulator.upload_count(BUCKET) >= 1, "dry run by default");
    let applied = run(true);
    assert!(applied.contains("aborted victim"), "{applied}");
    assert_eq!(emu.emulator.upload_count(BUCKET), 0);
}

/// One step of `streamed_writes_that_turn_back`: what the writer does on its open descriptor.
enum Step {
    /// Writes this many bytes at the end, in writes of the given size.
    Append(usize, usize),
    /// Writes bytes at an offset (inside what is already written).
    WriteAt(u64, usize),
    /// Reads everything back through the same descriptor.
    ReadBack,
    Truncate(u64),
    Fsync,
}

/// A sequential writer's last part is held in memory and its full parts go up from there
/// (and reach the staging file by direct I/O): everything else a writer may do on the same
/// descriptor (read back, write into a part already sent, truncate, fsync and go on, writes
/// that straddle parts, a part size that direct I/O cannot use) must still give exactly the
/// bytes written, and leave no upload behind.
#[test]
fn streamed_writes_that_turn_back() {
    use Step::*;
    use std::os::unix::fs::FileExt;
    let emu = TestEmulator::start();
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        ("exactly-one-part", vec![Append(1 << 20, 256 << 10)]),
        ("two-parts", vec![Append(2 << 20, 1 << 20)]),
        (
            "straddling",
            vec![
                Append(3_500_000, 300_000),
                ReadBack,
                Append(700_000, 65_536),
            ],
        ),
        (
            "turning-back",
            vec![
                Append(1_310_720, 262_144),
                ReadBack,
                Append(786_432, 262_144),
                WriteAt(500_000, 100),
                Append(524_288, 262_144),
                Fsync,
                Append(524_288, 131_072),
                Truncate(2_200_000),
                Append(1_800_000, 1 << 20),
                ReadBack,
                WriteAt(3_900_000, 10),
            ],
        ),
        (
            "fsync-at-part-end",
            vec![
                Append(1 << 20, 1 << 20),
                Fsync,
                Append(1 << 20, 1 << 20),
                Fsync,
            ],
        ),
        (
            "shrink-and-regrow",
            vec![
                Append(3 << 20, 1 << 20),
                Truncate(0),
                Append(2 << 20, 1 << 20),
            ],
        ),
    ];
    for part_size in ["1M", "1100000"] {
        let m = Mount::start(&emu, &["--part-size", part_size]);
        for (name, steps) in &scripts {
            let path = m.join(name);
            let mut model: Vec<u8> = Vec::new();
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            let mut seed = 1;
            for step in steps {
                match *step {
                    Append(total, chunk) => {
                        let data = pattern(total, seed);
                        seed += 1;
                        for c in data.chunks(chunk) {
                            f.write_all_at(c, model.len() as u64).unwrap();
                            model.extend_from_slice(c);
                        }
                    }
                    WriteAt(offset, len) => {
                        let data = pattern(len, seed);
                        seed += 1;
                        f.write_all_at(&data, offset).unwrap();
                        let end = offset as usize + len;
                        if model.len() < end {
                            model.resize(end, 0);
                        }
                        model[offset as usize..end].copy_from_slice(&data);
                    }
                    ReadBack => {
                        let mut back = vec![0u8; model.len()];
                        f.read_exact_at(&mut back, 0).unwrap();
                        assert!(back == model, "{part_size} {name}: read back differs");
                    }
                    Truncate(n) => {
                        f.set_len(n).unwrap();
                        model.resize(n as usize, 0);
                    }
                    Fsync => f.sync_all().unwrap(),
                }
            }
            drop(f);
            let stored = std::fs::read(&path).unwrap();
            assert_eq!(stored.len(), model.len(), "{part_size} {name}: size");
            assert!(stored == model, "{part_size} {name}: content differs");
            assert_eq!(
                sdk_ok(&emu, &["md5", name]).trim(),
                md5_hex(&model),
                "{part_size} {name}: the object in COS"
            );
        }
        assert_eq!(emu.emulator.upload_count(BUCKET), 0, "no upload left");
    }
}
