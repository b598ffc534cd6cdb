//! The Servicer through real kernel mounts over the emulator: `cosmount buckets`, and a mount
//! of every bucket (`--all-buckets`) with one directory per bucket, each reached in its own
//! region, mkdir and rmdir at the top making and deleting buckets. Tencent's official SDK
//! checks what the mount did and makes buckets the mount must see.
//!
//! The emulator answers a bucket only at its own region's host (NoSuchBucket elsewhere, as
//! COS does), so a mount that sent a bucket's requests to the wrong region would fail here.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::mount::{Mount, cosmount_bin};
use common::{TestEmulator, sdk, sdk_ok};

/// In the emulator's default region, ap-guangzhou.
const NEAR: &str = "near-1250000000";
/// In a region of its own.
const FAR: &str = "far-1250000000";
const FAR_REGION: &str = "ap-beijing";

fn emulator() -> TestEmulator {
    TestEmulator::start_with(|c| c.buckets = vec![NEAR.into(), format!("{FAR}@{FAR_REGION}")])
}

/// What the official SDK's GET Service lists: name → (region, creation date).
fn sdk_buckets(emu: &TestEmulator) -> BTreeMap<String, (String, String)> {
    let out = sdk_ok(emu, &["buckets"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    list.iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                (
                    b["region"].as_str().unwrap().to_string(),
                    b["created"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The SDK's arguments for `bucket` in `region`.
fn on<'a>(bucket: &'a str, region: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--bucket", bucket, "--region", region];
    all.extend_from_slice(args);
    all
}

/// The SDK, on `bucket` in `region`.
fn sdk_in(emu: &TestEmulator, bucket: &str, region: &str, args: &[&str]) -> std::process::Output {
    sdk(emu, &on(bucket, region, args))
}

fn sdk_in_ok(emu: &TestEmulator, bucket: &str, region: &str, args: &[&str]) -> String {
    sdk_ok(emu, &on(bucket, region, args))
}

/// Whether the SDK finds `key` in `bucket` in `region` (HEAD Object).
fn sdk_has(emu: &TestEmulator, bucket: &str, region: &str, key: &str) -> bool {
    sdk_in(emu, bucket, region, &["head", key]).status.success()
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The names in the mount's top directory, sorted.
fn top(m: &Mount) -> Vec<String> {
    names_in(m.path())
}

fn errno(r: std::io::Result<()>) -> i32 {
    r.expect_err("the call should fail").raw_os_error().unwrap()
}

#[test]
fn the_buckets_command_lists_names_regions_and_dates() {
    let emu = emulator();
    sdk_in_ok(
        &emu,
        "third-1250000000",
        "ap-chengdu",
        &["create-bucket", "third-1250000000"],
    );
    let out = Command::new(cosmount_bin())
        .args(["buckets", "--endpoint", &emu.endpoint()])
        .env("COS_SECRET_ID", &emu.config.secret_id)
        .env("COS_SECRET_KEY", emu.config.secret_key.expose())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected = sdk_buckets(&emu);
    assert_eq!(expected.len(), 3, "{expected:?}");
    // One line a bucket, sorted by name: name, region, creation date as COS gives them.
    let want: Vec<Vec<&str>> = expected
        .iter()
        .map(|(n, (r, c))| vec![n.as_str(), r.as_str(), c.as_str()])
        .collect();
    assert_eq!(listed, want, "{text}");
    assert_eq!(expected[FAR].0, FAR_REGION);
    assert_eq!(expected["third-1250000000"].0, "ap-chengdu");
    assert!(expected[NEAR].1.ends_with('Z'), "{expected:?}");
}

#[test]
fn every_bucket_is_a_directory_served_from_its_own_region() {
    let emu = emulator();
    // The emulator holds COS's rule: a bucket is not there at another region's host.
    let wrong = sdk_in(&emu, FAR, "ap-guangzhou", &["head", "anything"]);
    assert_eq!(wrong.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("404"));

    let m = Mount::start_all_buckets(&emu, &[], &[]);
    assert_eq!(top(&m), [FAR, NEAR]);
    for b in [NEAR, FAR] {
        assert!(std::fs::metadata(m.join(b)).unwrap().is_dir());
    }
    // A bucket's directory shows when the bucket was made.
    let created = sdk_buckets(&emu)[FAR].1.clone();
    let mtime = std::fs::metadata(m.join(FAR)).unwrap().mtime();
    let expected = cosmount::cos::client::parse_iso8601(&created).unwrap();
    let expected = expected.duration_since(std::time::UNIX_EPOCH).unwrap();
    assert_eq!(mtime, expected.as_secs() as i64, "created {created}");

    // Files written into two buckets of two regions land in each, as the SDK reads them.
    std::fs::create_dir(m.join(&format!("{NEAR}/docs"))).unwrap();
    std::fs::write(m.join(&format!("{NEAR}/docs/a.txt")), b"near bytes").unwrap();
    std::fs::write(m.join(&format!("{FAR}/b.txt")), b"far bytes").unwrap();
    assert_eq!(
        sdk_in_ok(&emu, NEAR, "ap-guangzhou", &["get", "docs/a.txt"]),
        "near bytes"
    );
    assert_eq!(
        sdk_in_ok(&emu, FAR, FAR_REGION, &["get", "b.txt"]),
        "far bytes"
    );
    assert!(!sdk_has(&emu, NEAR, "ap-guangzhou", "b.txt"));
    // And what the SDK writes is read through the mount.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"from the sdk").unwrap();
    sdk_in_ok(
        &emu,
        FAR,
        FAR_REGION,
        &["put", "sdk.txt", src.path().to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(m.join(&format!("{FAR}/sdk.txt"))).unwrap(),
        b"from the sdk"
    );
    assert_eq!(names_in(&m.join(FAR)), ["b.txt", "sdk.txt"]);

    // Moving a file between buckets is a copy and a delete (rename answers EXDEV, mv copes).
    let mv = Command::new("mv")
        .arg(m.join(&format!("{NEAR}/docs/a.txt")))
        .arg(m.join(FAR))
        .status()
        .unwrap();
    assert!(mv.success());
    assert_eq!(
        sdk_in_ok(&emu, FAR, FAR_REGION, &["get", "a.txt"]),
        "near bytes"
    );
    assert!(!sdk_has(&emu, NEAR, "ap-guangzhou", "docs/a.txt"));
    assert_eq!(
        errno(std::fs::rename(
            m.join(&format!("{FAR}/a.txt")),
            m.join(&format!("{NEAR}/a.txt"))
        )),
        libc::EXDEV
    );

    // The top holds buckets only, and a bucket cannot be renamed.
    assert_eq!(
        errno(std::fs::write(m.join("loose.txt"), b"x")),
        libc::EPERM
    );
    assert_eq!(
        errno(std::os::unix::fs::symlink(NEAR, m.join("link"))),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::set_permissions(
            m.path(),
            std::fs::Permissions::from_mode(0o700)
        )),
        libc::EPERM
    );
    assert_eq!(
        errno(std::fs::rename(m.join(NEAR), m.join("renamed-1250000000"))),
        libc::EPERM
    );
    assert_eq!(
        std::fs::metadata(m.join("nosuch-1250000000"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(m.log_text().contains("mounted every bucket"));
}

#[test]
fn mkdir_and_rmdir_at_the_top_make_and_delete_buckets() {
    let emu = emulator();
    let made = "made-1250000000";
    let m = Mount::start_all_buckets(&emu, &["--region", "ap-shanghai"], &[("RUST_LOG", "trace")]);
    std::fs::create_dir(m.join(made)).unwrap();
    // The official SDK sees the bucket, in the mount's --region.
    let seen = sdk_buckets(&emu);
    assert_eq!(
        seen.get(made).map(|(r, _)| r.as_str()),
        Some("ap-shanghai"),
        "{seen:?}"
    );
    assert_eq!(top(&m), [FAR, made, NEAR]);
    std::fs::write(m.join(&format!("{made}/f")), b"in the new bucket").unwrap();
    assert_eq!(
        sdk_in_ok(&emu, made, "ap-shanghai", &["get", "f"]),
        "in the new bucket"
    );

    // A bucket with an object in it is not removed (COS: BucketNotEmpty).
    assert_eq!(errno(std::fs::remove_dir(m.join(made))), libc::ENOTEMPTY);
    assert!(sdk_buckets(&emu).contains_key(made));
    std::fs::remove_file(m.join(&format!("{made}/f"))).unwrap();
    // Nor is one with a file open here that COS does not hold yet.
    let mut open = std::fs::File::create(m.join(&format!("{made}/g"))).unwrap();
    open.write_all(b"not stored yet").unwrap();
    assert!(!sdk_has(&emu, made, "ap-shanghai", "g"));
    assert_eq!(errno(std::fs::remove_dir(m.join(made))), libc::ENOTEMPTY);
    drop(open);
    assert_eq!(
        sdk_in_ok(&emu, made, "ap-shanghai", &["get", "g"]),
        "not stored yet"
    );
    std::fs::remove_file(m.join(&format!("{made}/g"))).unwrap();
    std::fs::remove_dir(m.join(made)).unwrap();
    assert!(!sdk_buckets(&emu).contains_key(made), "gone for the SDK");
    assert_eq!(top(&m), [FAR, NEAR]);

    // A bucket that exists, names COS refuses, names that cannot be buckets.
    assert_eq!(errno(std::fs::create_dir(m.join(NEAR))), libc::EEXIST);
    for bad in [
        "no-appid",
        "-lead-1250000000",
        "Upper-1250000000",
        "dot.ted-1250000000",
    ] {
        assert_eq!(
            errno(std::fs::create_dir(m.join(bad))),
            libc::EINVAL,
            "{bad}"
        );
    }
    assert_eq!(sdk_buckets(&emu).len(), 2);
    // An empty bucket the mount did not make goes too.
    std::fs::remove_dir(m.join(FAR)).unwrap();
    assert_eq!(sdk_buckets(&emu).keys().collect::<Vec<_>>(), [NEAR]);
    // Bucket calls log no secret, at trace level too.
    let log = m.log_text();
    assert!(
        log.contains("TRACE") && log.contains("made bucket"),
        "{log}"
    );
    for secret in [
        emu.config.secret_key.expose(),
        "q-signature",
        "q-sign-algorithm",
    ] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}

#[test]
fn buckets_the_sdk_makes_and_deletes_show_at_the_top_at_once() {
    let emu = emulator();
    // A listing of the top always asks COS; a stat trusts a name for --metadata-ttl (none).
    let m = Mount::start_all_buckets(&emu, &["--metadata-ttl", "0s"], &[]);
    assert_eq!(top(&m), [FAR, NEAR]);
    let other = "other-1250000000";
    sdk_in_ok(&emu, other, "ap-chengdu", &["create-bucket", other]);
    assert_eq!(top(&m), [FAR, NEAR, other]);
    std::fs::write(m.join(&format!("{other}/x")), b"made by the mount").unwrap();
    assert_eq!(
        sdk_in_ok(&emu, other, "ap-chengdu", &["get", "x"]),
        "made by the mount"
    );
    // Without --region the mount makes no bucket, and says why.
    assert_eq!(
        errno(std::fs::create_dir(m.join("new-1250000000"))),
        libc::EPERM
    );
    assert!(m.log_text().contains("needs --region"));
    sdk_in_ok(&emu, FAR, FAR_REGION, &["delete-bucket", FAR]);
    assert_eq!(top(&m), [NEAR, other]);
    assert_eq!(
        std::fs::metadata(m.join(FAR)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn a_bucket_made_elsewhere_after_the_mount_looked_is_refused_by_cos() {
    let emu = emulator();
    // With missing names remembered, the mount does not know of a bucket the SDK makes: mkdir
    // reaches COS, whose BucketAlreadyOwnedByYou becomes EEXIST.
    let m = Mount::start_all_buckets(
        &emu,
        &["--region", "ap-shanghai", "--negative-ttl", "1h"],
        &[],
    );
    let late = "late-1250000000";
    assert_eq!(
        std::fs::metadata(m.join(late)).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    sdk_in_ok(&emu, late, "ap-shanghai", &["create-bucket", late]);
    emu.emulator.reset_stats();
    assert_eq!(errno(std::fs::create_dir(m.join(late))), libc::EEXIST);
    assert_eq!(emu.op_count("put_bucket"), 1, "COS was asked");
}

#[test]
fn a_read_only_mount_of_every_bucket_changes_none() {
    let emu = emulator();
    let m = Mount::start_all_buckets(&emu, &["--region", "ap-shanghai", "--read-only"], &[]);
    assert_eq!(
        errno(std::fs::create_dir(m.join("ro-1250000000"))),
        libc::EROFS
    );
    assert_eq!(errno(std::fs::remove_dir(m.join(FAR))), libc::EROFS);
    assert_eq!(sdk_buckets(&emu).len(), 2);
}
