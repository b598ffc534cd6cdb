//! The read side through a real kernel FUSE mount over the emulator: objects written by the
//! official SDK and by our client look right through ordinary tools; listings cross pages;
//! big objects read back intact; external changes appear after the TTL; the negative cache
//! saves requests; start-up failures print one line and exit non-zero.

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::mount::{Mount, cosmount_bin};
use common::{TestEmulator, md5_hex, pattern, runtime, sdk_ok, sh};
use cosmount::cos::{Body, ObjectClient, ObjectMetadata, PutObject};

fn put(c: &cosmount::cos::CosClient, key: &str, data: &[u8], user: &[(&str, &str)]) {
    let meta = ObjectMetadata {
        content_type: None,
        user: user
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    runtime()
        .block_on(c.put_object(
            PutObject::new(key, Body::Bytes(Bytes::copy_from_slice(data))).metadata(meta),
        ))
        .unwrap();
}

#[test]
fn objects_from_sdk_and_client_look_right() {
    let emu = TestEmulator::start();
    let c = emu.client();
    put(&c, "plain.txt", b"plain\n", &[]);
    put(
        &c,
        "meta.txt",
        b"with metadata\n",
        &[
            ("mode", "33216"),
            ("uid", "1234"),
            ("gid", "4321"),
            ("mtime", "1600000000"),
        ],
    );
    put(&c, "marked/", b"", &[("mode", "16832")]); // a directory marker, mode 0700
    put(&c, "implicit/child.txt", b"child\n", &[]);
    let deep: String = (0..10).map(|i| format!("l{i}/")).collect::<String>() + "deep.txt";
    put(&c, &deep, b"deep\n", &[]);
    put(&c, "uni/中文 名字 (1)+~.txt", "unicode ✓\n".as_bytes(), &[]);
    put(&c, "a", b"file hidden by the directory a/\n", &[]);
    put(&c, "a/inside", b"inside\n", &[]);
    put(&c, "bad//double", b"x", &[]);
    put(&c, "dots/../escape", b"x", &[]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("sdk.bin"), pattern(300_000, 3)).unwrap();
    sdk_ok(
        &emu,
        &[
            "put",
            "sdk/by-sdk.bin",
            src.path().join("sdk.bin").to_str().unwrap(),
            "--meta",
            "mode=33261",
        ],
    );

    let m = Mount::start(&emu, &[]);
    let root = m.path();
    let listing = sh(root, "ls -lR");
    assert!(listing.contains("plain.txt"), "{listing}");
    assert!(listing.contains("中文 名字 (1)+~.txt"), "{listing}");
    assert!(
        !listing.contains("double"),
        "a key with // is skipped: {listing}"
    );
    assert!(
        !listing.contains("escape"),
        "a key with .. is skipped: {listing}"
    );

    let meta = std::fs::metadata(m.join("meta.txt")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    assert_eq!(meta.mtime(), 1_600_000_000);
    let plain = std::fs::metadata(m.join("plain.txt")).unwrap();
    assert_eq!(plain.mode() & 0o7777, 0o644, "default file mode");
    assert_eq!(plain.len(), 6);
    let marked = std::fs::metadata(m.join("marked")).unwrap();
    assert!(marked.is_dir());
    assert_eq!(marked.mode() & 0o7777, 0o700);
    assert!(std::fs::metadata(m.join("implicit")).unwrap().is_dir());
    assert_eq!(
        std::fs::read_to_string(m.join(&deep)).unwrap(),
        "deep\n",
        "10 levels deep"
    );
    assert!(
        std::fs::metadata(m.join("a")).unwrap().is_dir(),
        "the directory wins over the file a"
    );
    let sdk_meta = std::fs::metadata(m.join("sdk/by-sdk.bin")).unwrap();
    assert_eq!(sdk_meta.mode() & 0o7777, 0o755);
    assert_eq!(
        md5_hex(&std::fs::read(m.join("sdk/by-sdk.bin")).unwrap()),
        md5_hex(&pattern(300_000, 3))
    );
    // ls -l shows listed entries with their metadata too (not only after a stat).
    let ll = sh(root, "ls -ln sdk");
    assert!(ll.starts_with("total") && ll.contains("-rwxr-xr-x"), "{ll}");

    let found = sh(root, "find . -type f | sort");
    for f in [
        "./plain.txt",
        "./implicit/child.txt",
        "./a/inside",
        "./sdk/by-sdk.bin",
    ] {
        assert!(found.lines().any(|l| l == f), "{f} in {found}");
    }
    assert!(sh(root, "grep -rl child .").contains("implicit/child.txt"));
    let du = sh(root, "du -sk sdk");
    assert!(
        du.starts_with("293") || du.starts_with("29"),
        "du counts the bytes: {du}"
    );
    let out = tempfile::tempdir().unwrap();
    sh(root, &format!("cp -r . {}/copy", out.path().display()));
    assert_eq!(
        std::fs::read(out.path().join("copy/uni/中文 名字 (1)+~.txt")).unwrap(),
        "unicode ✓\n".as_bytes()
    );
    let stat = sh(root, "stat -c '%s %F' plain.txt marked");
    assert_eq!(stat, "6 regular file\n0 directory\n");
}

#[test]
fn a_directory_of_2500_objects_lists_across_pages() {
    let emu = TestEmulator::start();
    let c = emu.client();
    runtime().block_on(async {
        let names: Vec<String> = (0..2500).map(|i| format!("many/file-{i:05}")).collect();
        for chunk in names.chunks(100) {
            futures::future::join_all(chunk.iter().map(|k| {
                c.put_object(PutObject::new(
                    k.clone(),
                    Body::Bytes(Bytes::from(k.clone().into_bytes())),
                ))
            }))
            .await;
        }
    });
    let m = Mount::start(&emu, &[]);
    let mut names: Vec<String> = std::fs::read_dir(m.join("many"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2500);
    assert_eq!(names[0], "file-00000");
    assert_eq!(names[2499], "file-02499");
    names.dedup();
    assert_eq!(names.len(), 2500, "no entry twice across pages");
    assert_eq!(
        std::fs::read_to_string(m.join("many/file-01234")).unwrap(),
        "many/file-01234"
    );
    let wc = sh(m.path(), "ls -l many | tail -n +2 | wc -l");
    assert_eq!(wc.trim(), "2500");
}

#[test]
fn a_100_mib_object_reads_back_with_the_same_md5() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let data = pattern(100 << 20, 11);
    put(&c, "big.bin", &data, &[]);
    let m = Mount::start(&emu, &[]);
    let read = std::fs::read(m.join("big.bin")).unwrap();
    assert_eq!(read.len(), data.len());
    assert_eq!(md5_hex(&read), md5_hex(&data));
    // Random reads fetch only what they need and return the right bytes.
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(m.join("big.bin")).unwrap();
    for off in [77_777_777u64, 5, 50 << 20, (100 << 20) - 10] {
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut buf = vec![0u8; 10];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &data[off as usize..off as usize + 10]);
    }
}

#[test]
fn external_changes_appear_after_the_ttl() {
    let emu = TestEmulator::start();
    let c = emu.client();
    put(&c, "doc.txt", b"version 1\n", &[]);
    let m = Mount::start(&emu, &["--metadata-ttl", "1s", "--negative-ttl", "1s"]);
    assert_eq!(
        std::fs::read_to_string(m.join("doc.txt")).unwrap(),
        "version 1\n"
    );
    put(&c, "doc.txt", b"version 2, longer\n", &[]);
    put(&c, "new.txt", b"new\n", &[]);
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        std::fs::read_to_string(m.join("doc.txt")).unwrap(),
        "version 2, longer\n"
    );
    assert_eq!(std::fs::read_to_string(m.join("new.txt")).unwrap(), "new\n");
    runtime().block_on(c.delete_object("doc.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    assert!(
        std::fs::metadata(m.join("doc.txt")).is_err(),
        "deleted object disappears"
    );
    let names: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["new.txt"]);
}

#[test]
fn a_reader_sees_estale_when_the_object_is_replaced_not_mixed_bytes() {
    let emu = TestEmulator::start();
    let c = emu.client();
    let v1 = pattern(20 << 20, 1);
    put(&c, "f", &v1, &[]);
    let m = Mount::start(&emu, &["--prefetch-window", "1M"]);
    use std::io::Read;
    let mut f = std::fs::File::open(m.join("f")).unwrap();
    let mut head = vec![0u8; 4096];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head[..], &v1[..4096]);
    put(&c, "f", &pattern(20 << 20, 2), &[]);
    let mut rest = Vec::new();
    let err = f.read_to_end(&mut rest).unwrap_err();
    // The core answers ESTALE; through the page cache the kernel reports a failed page read
    // as EIO.
    assert!(
        matches!(err.raw_os_error(), Some(libc::ESTALE) | Some(libc::EIO)),
        "{err}"
    );
    assert!(
        m.log_text().contains("changed while open"),
        "{}",
        m.log_text()
    );
    assert!(
        v1[4096..].starts_with(&rest),
        "whatever was read before the error is from version 1"
    );
}

/// A program reading a directory's files in listing order (here `cat` of each name, once the
/// listing's metadata has expired) gets the next small files fetched whole ahead of it: their
/// opens need no HEAD and their reads no GET of their own, and it reads the right bytes. A
/// file too big to fetch ahead is read as usual; `--no-read-ahead-files` turns it off.
#[test]
fn files_read_in_listing_order_are_fetched_ahead_without_a_head_or_get_each() {
    let emu = TestEmulator::start();
    let client = emu.client();
    let names: Vec<String> = (0..30).map(|i| format!("f{i:02}")).collect();
    let mut expected = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let data = pattern(if i == 15 { 2 << 20 } else { 4000 + i }, i as u64);
        put(&client, &format!("d/{n}"), &data, &[]);
        expected.extend_from_slice(&data);
    }
    for ahead in [true, false] {
        let args = if ahead {
            vec!["--metadata-ttl", "3s"]
        } else {
            vec!["--metadata-ttl", "3s", "--no-read-ahead-files"]
        };
        let m = Mount::start(&emu, &args);
        let listed = std::fs::read_dir(m.join("d")).unwrap().count();
        assert_eq!(listed, 30);
        // What the listing taught expires; the files are then opened in its order.
        std::thread::sleep(Duration::from_millis(3200));
        let (heads, gets) = (emu.op_count("head"), emu.op_count("get"));
        let out = Command::new("cat")
            .args(names.iter().map(|n| m.join(&format!("d/{n}"))))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == expected,
            "cat read other bytes (ahead: {ahead})"
        );
        let (heads, gets) = (emu.op_count("head") - heads, emu.op_count("get") - gets);
        eprintln!("ahead {ahead}: {heads} HEADs, {gets} GETs");
        if ahead {
            // The first two opens, which start the run, and the big file ask; the rest do not.
            assert!(heads <= 6, "{heads} HEADs for 30 files read in order");
            // One GET per small file, and a few ranged ones for the big file.
            assert!(gets <= 29 + 6, "{gets} GETs for 30 files read in order");
            // Another client replaces a file whose fetch ahead this mount still holds: once the
            // metadata TTL has passed, a read gets the new bytes, never the fetched ones.
            let newer = pattern(5000, 99);
            put(&client, "d/f04", &newer, &[]);
            std::thread::sleep(Duration::from_millis(3200));
            assert!(
                std::fs::read(m.join("d/f04")).unwrap() == newer,
                "f04 after the change"
            );
            put(&client, "d/f04", &pattern(4004, 4), &[]);
            // What was fetched never outlives the mount's own rename of the tree.
            // (A new `d`, so that the lookup of `d/f29` reaches the mount.)
            std::fs::rename(m.join("d"), m.join("e")).unwrap();
            std::fs::create_dir(m.join("d")).unwrap();
            assert!(!m.join("d/f29").exists(), "d/f29 after the rename");
            assert_eq!(std::fs::read(m.join("e/f29")).unwrap(), pattern(4029, 29));
            std::fs::remove_dir(m.join("d")).unwrap();
            std::fs::rename(m.join("e"), m.join("d")).unwrap();
            // Right after a listing, with its metadata fresh and every GET slow: a read waits
            // for its file's fetch in flight instead of sending a GET of its own.
            let m2 = Mount::start(&emu, &args);
            assert_eq!(std::fs::read_dir(m2.join("d")).unwrap().count(), 30);
            emu.emulator.faults().set("get:delay=50ms:1").unwrap();
            let gets = emu.op_count("get");
            let out = Command::new("cat")
                .args(names.iter().map(|n| m2.join(&format!("d/{n}"))))
                .output()
                .unwrap();
            emu.emulator.faults().clear();
            assert!(
                out.stdout == expected,
                "cat read other bytes (fresh listing)"
            );
            let gets = emu.op_count("get") - gets;
            assert!(gets <= 29 + 6, "{gets} GETs for 30 files read in order");
        } else {
            assert!(heads >= 28, "{heads} HEADs with --no-read-ahead-files");
        }
    }
}

#[test]
fn the_negative_cache_answers_repeated_misses_without_requests() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--negative-ttl", "30s"]);
    assert!(std::fs::metadata(m.join("missing")).is_err());
    let heads = emu.op_count("head");
    let lists = emu.op_count("list");
    for _ in 0..20 {
        assert!(std::fs::metadata(m.join("missing")).is_err());
        assert!(std::fs::File::open(m.join("missing")).is_err());
    }
    assert_eq!(emu.op_count("head"), heads, "no HEAD for a remembered miss");
    assert_eq!(emu.op_count("list"), lists, "no LIST for a remembered miss");
    // Our own create replaces the negative entry at once.
    std::fs::write(m.join("missing"), b"now here").unwrap();
    assert_eq!(std::fs::read(m.join("missing")).unwrap(), b"now here");
}

/// With `--fast-listing` a listing is trusted alone: `ls -l` (which asks every entry for its
/// SELinux label and ACL) and `getfattr` of the listed entries send no HEAD; they show the
/// mount's default mode and no extended attributes until the metadata TTL passes. By default
/// each entry costs one HEAD, and shows its own mode and attributes.
#[test]
fn with_fast_listing_ls_l_and_getfattr_of_a_listing_send_no_head() {
    let emu = TestEmulator::start();
    let c = emu.client();
    // Mode 0600 and the attribute user.k = "v", as s3fs encodes it.
    let xattr = "%7B%22user.k%22%3A%22dg%3D%3D%22%7D";
    for i in 0..40 {
        put(
            &c,
            &format!("d/f{i:02}"),
            b"x",
            &[("mode", "33152"), ("xattr", xattr)],
        );
    }
    for fast in [true, false] {
        let mut args = vec!["--metadata-ttl", "1h"];
        if fast {
            args.push("--fast-listing");
        }
        let m = Mount::start(&emu, &args);
        std::fs::metadata(m.join("d")).unwrap();
        let (heads, lists) = (emu.op_count("head"), emu.op_count("list"));
        let ls = sh(m.path(), "ls -l d");
        let attrs = sh(m.path(), "getfattr -d -m - d/*");
        // Two listings: `ls`, then the shell's glob (every readdir lists by default).
        let (heads, lists) = (emu.op_count("head") - heads, emu.op_count("list") - lists);
        let private = ls.lines().filter(|l| l.starts_with("-rw------- ")).count();
        let with_k = attrs.lines().filter(|l| *l == "user.k=\"v\"").count();
        if fast {
            assert_eq!(
                (heads, lists),
                (0, 2),
                "HEADs and LISTs of ls -l and getfattr"
            );
            assert_eq!(
                (private, with_k),
                (0, 0),
                "listed entries show the defaults:\n{ls}"
            );
            assert_eq!(ls.lines().filter(|l| l.starts_with('-')).count(), 40);
        } else {
            assert_eq!(
                (heads, lists),
                (40, 2),
                "HEADs and LISTs of ls -l and getfattr"
            );
            assert_eq!((private, with_k), (40, 40), "{ls}{attrs}");
        }
    }
}

/// With listings reused (`--listing-ttl`), removing a tree this mount made sends no LIST:
/// whether a directory is empty comes from its fresh listing, which the mount's own creates
/// and removals keep up to date, and a name left in it still makes `rmdir` fail with
/// ENOTEMPTY. Without the option every `rmdir` asks COS.
#[test]
fn with_listings_reused_rmdir_knows_a_directory_is_empty_without_a_list() {
    let emu = TestEmulator::start();
    let client = emu.client();
    let gone = |key: &str| {
        runtime()
            .block_on(client.head_object(key))
            .is_err_and(|e| e.is_not_found())
    };
    for reused in [true, false] {
        let args: &[&str] = if reused {
            &["--listing-ttl", "30s"]
        } else {
            &[]
        };
        let m = Mount::start(&emu, args);
        std::fs::create_dir_all(m.join("t/a")).unwrap();
        std::fs::write(m.join("t/a/x"), b"x").unwrap();
        std::fs::write(m.join("t/y"), b"y").unwrap();
        let lists = emu.op_count("list");
        let not_empty = |p: &str| std::fs::remove_dir(m.join(p)).unwrap_err().raw_os_error();
        assert_eq!(not_empty("t/a"), Some(libc::ENOTEMPTY));
        std::fs::remove_file(m.join("t/a/x")).unwrap();
        std::fs::remove_dir(m.join("t/a")).unwrap();
        assert_eq!(not_empty("t"), Some(libc::ENOTEMPTY));
        std::fs::remove_file(m.join("t/y")).unwrap();
        std::fs::remove_dir(m.join("t")).unwrap();
        let lists = emu.op_count("list") - lists;
        if reused {
            assert_eq!(lists, 0, "LISTs with listings reused");
        } else {
            assert!(lists >= 4, "{lists} LISTs for four rmdirs by default");
        }
        assert!(gone("t/a/") && gone("t/"), "the markers are deleted");
    }
}

fn cosmount_fails(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(cosmount_bin())
        .args(args)
        .env_remove("COS_SECRET_ID")
        .env_remove("COS_SECRET_KEY")
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .env("HOME", "/nonexistent")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn start_up_failures_print_one_line_and_exit_non_zero() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt_s = mnt.to_str().unwrap();
    let ep = emu.endpoint();
    let good = format!(
        "hmac:{}:{}",
        emu.config.secret_id,
        emu.config.secret_key.expose()
    );
    let wrong = format!("hmac:{}:wrong-key", emu.config.secret_id);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                common::BUCKET.into(),
                mnt_s.into(),
                "--endpoint".into(),
                ep.clone(),
                "--credential".into(),
                wrong,
            ],
            "SignatureDoesNotMatch",
        ),
        (
            vec![
                common::BUCKET.into(),
                mnt_s.into(),
                "--endpoint".into(),
                ep.clone(),
                "--credential".into(),
                "hmac:AKIDnobody:x".into(),
            ],
            "InvalidAccessKeyId",
        ),
        (
            vec![
                "nosuch-1250000000".into(),
                mnt_s.into(),
                "--endpoint".into(),
                ep.replace("127.0.0.1", "nosuch-1250000000.localhost"),
                "--credential".into(),
                good.clone(),
            ],
            "no such bucket",
        ),
        (
            vec![
                common::BUCKET.into(),
                mnt_s.into(),
                "--endpoint".into(),
                "http://127.0.0.1:1".into(),
                "--credential".into(),
                good.clone(),
            ],
            "cannot reach",
        ),
        (
            vec![
                common::BUCKET.into(),
                "/nonexistent/mnt".into(),
                "--endpoint".into(),
                ep.clone(),
                "--credential".into(),
                good.clone(),
            ],
            "does not exist",
        ),
        (
            vec![
                common::BUCKET.into(),
                mnt_s.into(),
                "--endpoint".into(),
                ep.clone(),
            ],
            "no credentials",
        ),
    ];
    for (args, expect) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = cosmount_fails(&a, &[]);
        assert_ne!(code, 0, "{a:?}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "one line for {a:?}: {stderr}"
        );
        assert!(stderr.starts_with("cosmount: "), "{stderr}");
        assert!(
            stderr.contains(expect),
            "{a:?}: expected {expect:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"));
        assert!(!common::mount::is_mounted(&mnt));
    }
    // A non-empty mountpoint.
    std::fs::write(mnt.join("x"), b"x").unwrap();
    let (code, stderr) = cosmount_fails(
        &[
            common::BUCKET,
            mnt_s,
            "--endpoint",
            &ep,
            "--credential",
            &good,
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("not empty"), "{stderr}");
}
