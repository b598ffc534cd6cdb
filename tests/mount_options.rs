//! Mount options through real mounts: read-only, a key prefix, daemon mode (returns once
//! ready, reports start-up errors), /etc/fstab-style `-o` options, the YAML config and a
//! passwd file, and unmounting a busy mount.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::mount::{Mount, cosmount_bin, is_mounted};
use common::{BUCKET, TestEmulator, runtime, sh_status};
use cosmount::cos::{Body, GetObject, ObjectClient, PutObject};

fn put(emu: &TestEmulator, key: &str, data: &'static [u8]) {
    runtime()
        .block_on(
            emu.client()
                .put_object(PutObject::new(key, Body::Bytes(Bytes::from_static(data)))),
        )
        .unwrap();
}

#[test]
fn read_only_mounts_refuse_every_change() {
    let emu = TestEmulator::start();
    put(&emu, "f", b"data");
    let m = Mount::start(&emu, &["--read-only"]);
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"data");
    for (what, r) in [
        ("write", std::fs::write(m.join("f"), b"x")),
        ("create", std::fs::write(m.join("new"), b"x")),
        ("mkdir", std::fs::create_dir(m.join("d"))),
        ("unlink", std::fs::remove_file(m.join("f"))),
        ("rename", std::fs::rename(m.join("f"), m.join("g"))),
    ] {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS), "{what}");
    }
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"data");
}

#[test]
fn a_prefix_mount_sees_and_writes_only_under_its_prefix() {
    let emu = TestEmulator::start();
    put(&emu, "outside", b"no");
    put(&emu, "team/a/inside", b"yes");
    put(&emu, "team/a/sub/deep", b"deep");
    let m = Mount::start(&emu, &["--prefix", "team/a/"]);
    let mut names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["inside", "sub"]);
    std::fs::write(m.join("written"), b"here").unwrap();
    let (_, body) = runtime()
        .block_on(
            emu.client()
                .get_object_bytes(GetObject::new("team/a/written")),
        )
        .unwrap();
    assert_eq!(&body[..], b"here");
    assert!(m.join("sub/deep").exists());
}

fn wait_gone(pattern: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .unwrap();
        if !out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_mode_returns_once_mounted_and_reports_errors() {
    let emu = TestEmulator::start();
    put(&emu, "hello", b"world");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("daemon-mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("daemon.log");
    let run = |key: &str| {
        Command::new(cosmount_bin())
            .arg(BUCKET)
            .arg(&mnt)
            .args(["--endpoint", &emu.endpoint(), "--log-file"])
            .arg(&log)
            .env("COS_SECRET_ID", &emu.config.secret_id)
            .env("COS_SECRET_KEY", key)
            .output()
            .unwrap()
    };
    let bad = run("wrong-key");
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(!is_mounted(&mnt));

    let ok = run(emu.config.secret_key.expose());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(is_mounted(&mnt), "mounted when the command returns");
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"world");
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success());
    wait_gone(&format!("cosmount {BUCKET} {}", mnt.display()));
}

#[test]
fn fstab_style_options_yaml_config_and_passwd_file() {
    let emu = TestEmulator::start();
    put(&emu, "f", b"x");
    let dir = tempfile::tempdir().unwrap();
    // A YAML config with the seed's keys.
    let yaml = dir.path().join("cosmount.yaml");
    std::fs::write(
        &yaml,
        format!(
            "credential: hmac:{}:{}\nname: {BUCKET}\nwork_dir: /\nlocation: ap-guangzhou\nendpoint: {}\n",
            emu.config.secret_id,
            emu.config.secret_key.expose(),
            emu.endpoint()
        ),
    )
    .unwrap();
    let mnt = dir.path().join("m1");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new(cosmount_bin())
        .arg(BUCKET)
        .arg(&mnt)
        .arg("-o")
        .arg(format!(
            "rw,nosuid,nodev,_netdev,config={},uid=4321,file_mode=0600,metadata_ttl=2s",
            yaml.display()
        ))
        .env_remove("COS_SECRET_ID")
        .env_remove("COS_SECRET_KEY")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(mnt.join("f")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), 4321);
    assert_eq!(meta.mode() & 0o7777, 0o600);
    Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    wait_gone(&format!("cosmount {BUCKET} {}", mnt.display()));

    // A passwd file, mode 600.
    let passwd = dir.path().join("passwd-cosmount");
    std::fs::write(
        &passwd,
        format!(
            "# comment\nother-1250000000:AKIDx:y\n{BUCKET}:{}:{}\n",
            emu.config.secret_id,
            emu.config.secret_key.expose()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m2 = dir.path().join("m2");
    std::fs::create_dir(&m2).unwrap();
    let m = Mount::start_at(
        &emu,
        &["--passwd-file", passwd.to_str().unwrap()],
        &[("COS_SECRET_ID", ""), ("COS_SECRET_KEY", "")],
        tempfile::tempdir().unwrap(),
        m2,
    );
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"x");
}

#[test]
fn a_busy_mount_is_not_torn_away_and_open_files_are_committed() {
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &[]);
    let mut f = std::fs::File::create(m.join("busy")).unwrap();
    f.write_all(b"still being written").unwrap();
    let (ok, out) = sh_status(
        std::path::Path::new("/"),
        &format!("fusermount3 -u {}", m.path().display()),
    );
    assert!(!ok, "unmounting a busy mount fails: {out}");
    assert!(is_mounted(m.path()));
    f.write_all(b", and finished").unwrap();
    drop(f);
    m.unmount();
    let (_, body) = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("busy")))
        .unwrap();
    assert_eq!(&body[..], b"still being written, and finished");
    assert_eq!(emu.emulator.upload_count(BUCKET), 0);
}
