//! Mount options through real mounts: read-only, a key prefix, daemon mode (returns once
//! ready, reports start-up errors), /etc/fstab-style `-o` options, the YAML config and a
//! passwd file, unmounting a busy mount, and mounts driven by cosfs's options alone (a cosfs
//! command line, and a cosfs fstab line as mount(8) hands it to mount.fuse3).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::mount::{Mount, cosmount_bin, is_mounted};
use common::{BUCKET, TestEmulator, md5_hex, pattern, runtime, sh_status};
use cosmount::cos::{Body, ClientConfig, CosClient, Endpoint, GetObject, ObjectClient, PutObject};

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

/// An emulator whose default bucket (the one an IP address reaches) is a decoy: a mount reaches
/// `BUCKET` only if its requests name it in the Host, as cosfs's `url=` rule does.
fn emulator_with_a_decoy_bucket() -> TestEmulator {
    TestEmulator::start_with(|c| c.buckets = vec!["decoy-1250000000".into(), BUCKET.into()])
}

/// A client for `bucket` of the emulator, addressed by virtual host (`*.localhost` is loopback).
fn bucket_client(emu: &TestEmulator, bucket: &str) -> Arc<CosClient> {
    let port = emu.emulator.addr().port();
    let endpoint = format!("http://{bucket}.localhost:{port}");
    Arc::new(
        CosClient::new(ClientConfig {
            bucket: bucket.into(),
            endpoint: Endpoint::Url(endpoint.parse().unwrap()),
            ..emu.client_config()
        })
        .unwrap(),
    )
}

/// cosfs's url for the emulator: a COS-style service host the bucket is put in front of.
fn cosfs_url(emu: &TestEmulator) -> String {
    format!("http://cos.localhost:{}", emu.emulator.addr().port())
}

/// A cosfs passwd file (`bucket:SecretId:SecretKey`, mode 600).
fn write_passwd(emu: &TestEmulator, path: &Path) {
    std::fs::write(
        path,
        format!(
            "{BUCKET}:{}:{}\n",
            emu.config.secret_id,
            emu.config.secret_key.expose()
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Leaves the passwd files as the only source of credentials.
fn without_credentials_in_env(mut cmd: Command) -> Command {
    for var in [
        "COS_SECRET_ID",
        "COS_SECRET_KEY",
        "COS_SESSION_TOKEN",
        "TENCENTCLOUD_SECRET_ID",
        "TENCENTCLOUD_SECRET_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn put_plain(client: &CosClient, key: &str, data: &'static [u8]) {
    runtime()
        .block_on(client.put_object(PutObject::new(key, Body::Bytes(Bytes::from_static(data)))))
        .unwrap();
}

#[test]
fn a_cosfs_command_line_mounts_with_only_the_program_name_changed() {
    let emu = emulator_with_a_decoy_bucket();
    let client = bucket_client(&emu, BUCKET);
    put_plain(&client, "plain", b"no attribute metadata");
    put_plain(&client, "dir/inner", b"x");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let passwd = dir.path().join("passwd-cosfs");
    write_passwd(&emu, &passwd);
    let mnt = dir.path().join("cosfs");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = Command::new(cosmount_bin());
    cmd.arg(BUCKET)
        .arg(&mnt)
        .arg(format!("-ourl={}", cosfs_url(&emu)))
        .arg(format!("-opasswd_file={}", passwd.display()))
        .args(["-odbglevel=info", "-oallow_other"])
        .args(["-ouid=4321,gid=4322,umask=027"])
        .args([
            "-omultipart_size=5",
            "-oparallel_count=4",
            "-ostat_cache_expire=1",
        ])
        .args(["-onoxattr", "-oretries=3"])
        .arg(format!(
            "-ouse_cache={}",
            dir.path().join("cache").display()
        ))
        .arg(format!("-otmpdir={}", dir.path().join("staging").display()))
        .arg("-f")
        .env_remove("RUST_LOG")
        .env("HOME", &home);
    let dir_path = dir.path().to_path_buf();
    let m = Mount::spawn(without_credentials_in_env(cmd), dir, mnt);

    // uid, gid and umask give the attributes of objects without attribute metadata (027: not
    // cosmount's default modes, so a lost umask shows).
    let plain = std::fs::metadata(m.join("plain")).unwrap();
    assert!(plain.is_file());
    assert_eq!((plain.uid(), plain.gid()), (4321, 4322));
    assert_eq!(plain.mode() & 0o7777, 0o640);
    let d = std::fs::metadata(m.join("dir")).unwrap();
    assert!(d.is_dir());
    assert_eq!((d.uid(), d.gid()), (4321, 4322));
    assert_eq!(d.mode() & 0o7777, 0o750);

    // multipart_size=5 (MB): 12 MiB go up as three parts of one multipart upload.
    let data = pattern(12 << 20, 7);
    std::fs::write(m.join("big"), &data).unwrap();
    assert_eq!(emu.op_count("initiate"), 1);
    assert_eq!(emu.op_count("put_part"), 3);
    assert_eq!(emu.op_count("complete"), 1);
    let (_, body) = runtime()
        .block_on(client.get_object_bytes(GetObject::new("big")))
        .unwrap();
    assert_eq!(md5_hex(&body), md5_hex(&data));
    // The bucket was named in the Host: the decoy default bucket got nothing.
    assert!(runtime().block_on(emu.client().head_object("big")).is_err());
    assert_eq!(std::fs::read(m.join("big")).unwrap().len(), data.len());

    // use_cache is the data cache: the blocks read are kept there.
    let log = m.log_text();
    assert!(log.contains("data cache in"), "{log}");
    let cached = std::fs::read_dir(dir_path.join("cache").join("v1"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "data"));
    assert!(cached, "blocks in the use_cache directory");
}

/// What mount(8) runs for an fstab line of type `fuse.cosmount`: `mount.fuse3 SOURCE DIR -o
/// rw,OPTIONS -t fuse.cosmount`, which runs `cosmount SOURCE DIR -o OPTIONS` through /bin/sh.
#[test]
fn a_cosfs_fstab_line_mounts_with_its_type_changed_to_fuse_cosmount() {
    let emu = emulator_with_a_decoy_bucket();
    let client = bucket_client(&emu, BUCKET);
    put_plain(&client, "hello", b"world");
    let dir = tempfile::tempdir().unwrap();
    // No passwd_file in the line: cosfs's default file in the home directory.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    write_passwd(&emu, &home.join(".passwd-cosfs"));
    let mnt = dir.path().join("cosfs");
    std::fs::create_dir(&mnt).unwrap();
    // cosfs's README line, with the emulator for COS and the type changed from fuse.
    let line = format!(
        "cosfs#{BUCKET} {} fuse.cosmount _netdev,allow_other,url={},dbglevel=info 0 0",
        mnt.display(),
        cosfs_url(&emu)
    );
    let f: Vec<&str> = line.split_whitespace().collect();
    let bin_dir = Path::new(cosmount_bin()).parent().unwrap();
    // mount(8) finds its helpers in /sbin (here /usr/sbin), whatever PATH says.
    let helper = ["/usr/sbin/mount.fuse3", "/sbin/mount.fuse3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mount.fuse3");
    let mut mount_fuse = Command::new(helper);
    mount_fuse
        .args([f[0], f[1], "-o", &format!("rw,{}", f[3]), "-t", f[2]])
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env("HOME", &home);
    let out = without_credentials_in_env(mount_fuse).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = format!("cosmount cosfs#{BUCKET} {}", mnt.display());
    let mut m = Mount::adopt(dir, mnt);
    assert_eq!(std::fs::read(m.join("hello")).unwrap(), b"world");
    std::fs::write(m.join("from-fstab"), b"written").unwrap();
    let (_, body) = runtime()
        .block_on(client.get_object_bytes(GetObject::new("from-fstab")))
        .unwrap();
    assert_eq!(&body[..], b"written");
    m.unmount();
    wait_gone(&daemon);
}

/// GETs the emulator served while `f` ran.
fn gets_during(emu: &TestEmulator, f: impl FnOnce()) -> u64 {
    let before = emu.op_count("get");
    f();
    emu.op_count("get") - before
}

#[test]
fn direct_io_keeps_files_out_of_the_page_cache_and_still_reads_writes_and_maps_them() {
    let emu = TestEmulator::start();
    let data = pattern(6 << 20, 41);
    runtime()
        .block_on(emu.client().put_object(PutObject::new(
            "big.bin",
            Body::Bytes(Bytes::from(data.clone())),
        )))
        .unwrap();
    let read_twice = |m: &Mount| -> (u64, u64) {
        let read = || assert!(std::fs::read(m.join("big.bin")).unwrap() == data);
        (gets_during(&emu, read), gets_during(&emu, read))
    };
    // By default the second read of an unchanged file comes from the kernel's page cache.
    let (first, second) = read_twice(&Mount::start(&emu, &[]));
    assert!(first >= 1, "the first read sent no GET");
    assert_eq!(second, 0, "without direct_io the second read reached COS");
    // libfuse's option, as a cosfs fstab line spells it: every read reaches cosmount.
    let m = Mount::start(&emu, &["-o", "direct_io"]);
    let (first, second) = read_twice(&m);
    assert!(
        first >= 1 && second >= 1,
        "direct_io reads: {first} then {second} GETs"
    );

    // Writes: a multipart file from dd, and appends from several processes to one log.
    let (ok, out) = sh_status(
        m.path(),
        "head -c 20971520 /dev/urandom > src.bin && dd if=src.bin of=copy.bin bs=1M status=none \
         && cmp src.bin copy.bin && \
         for p in 1 2 3 4; do (for i in $(seq 50); do echo \"$p $i\" >> log; done) & done; wait",
    );
    assert!(ok, "{out}");
    let log = std::fs::read_to_string(m.join("log")).unwrap();
    assert_eq!(
        log.lines().count(),
        200,
        "appends lost with direct_io:\n{log}"
    );
    let src = std::fs::read(m.join("src.bin")).unwrap();
    let stored = runtime()
        .block_on(emu.client().get_object_bytes(GetObject::new("copy.bin")))
        .unwrap()
        .1;
    assert!(stored == src, "copy.bin on COS differs from what dd wrote");

    // A map of a direct-I/O file still reads its bytes.
    let (ok, out) = sh_status(
        m.path(),
        "python3 -c 'import mmap,sys; f=open(\"big.bin\",\"rb\"); \
         m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ); sys.stdout.write(str(m[5<<20:(5<<20)+8].hex()))'",
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), hex::encode(&data[5 << 20..(5 << 20) + 8]));
}
