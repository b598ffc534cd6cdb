//! Bad input to `cosmount`: each case gets one clear line on stderr and a non-zero exit code,
//! never a panic. Exit code 2: the arguments or configuration are wrong; 1: they are fine but
//! the mount cannot be made (credentials, bucket, endpoint, mountpoint).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::mount::cosmount_bin;
use common::{BUCKET, TestEmulator};

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    expect: &'static str,
}

fn run(case: &Case) -> (i32, String) {
    let out = Command::new(cosmount_bin())
        .args(&case.args)
        .env_remove("COS_SECRET_ID")
        .env_remove("COS_SECRET_KEY")
        .env_remove("COS_SESSION_TOKEN")
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .env("HOME", "/nonexistent")
        .envs(case.env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let a_file = d.join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    let full = d.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let short_key = d.join("short.key");
    std::fs::write(&short_key, [1u8; 16]).unwrap();
    let bad_b64 = d.join("bad.key");
    std::fs::write(&bad_b64, "not!base64!at!all!!").unwrap();
    let b64_wrong_len = d.join("b64.key");
    std::fs::write(&b64_wrong_len, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap();
    let loose = d.join("passwd-loose");
    std::fs::write(&loose, format!("{BUCKET}:id:key\n")).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let yaml_unknown = d.join("unknown.yaml");
    std::fs::write(&yaml_unknown, "credential: hmac:a:b\nbogus_key: 1\n").unwrap();
    let yaml_type = d.join("type.yaml");
    std::fs::write(&yaml_type, "credential: [1, 2]\n").unwrap();
    let yaml_other_bucket = d.join("other.yaml");
    std::fs::write(&yaml_other_bucket, "name: other-1250000000\n").unwrap();
    let cosfs_short_key = d.join("cosfs-short.key");
    std::fs::write(&cosfs_short_key, "too-short-for-aes-256\n").unwrap();

    let m = mnt.to_str().unwrap().to_string();
    let ep = emu.endpoint();
    let good = emu.credential_arg();
    let p = |path: &std::path::Path| path.to_str().unwrap().to_string();
    // BUCKET MOUNTPOINT --endpoint URL, then `extra`.
    let at = |mountpoint: &str, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            BUCKET.to_string(),
            mountpoint.to_string(),
            "--endpoint".into(),
            ep.clone(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let base = |extra: &[&str]| at(&m, extra);
    let cases = vec![
        Case {
            name: "malformed --credential",
            args: base(&["--credential", "hmac:only-id"]),
            env: vec![],
            code: 2,
            expect: "malformed credential",
        },
        Case {
            name: "unsupported credential protocol",
            args: base(&["--credential", "basic:a:b"]),
            env: vec![],
            code: 2,
            expect: "unsupported credential protocol",
        },
        Case {
            name: "missing credentials",
            args: base(&[]),
            env: vec![],
            code: 2,
            expect: "no credentials",
        },
        Case {
            name: "wrong SecretKey",
            args: base(&[
                "--credential",
                &format!("hmac:{}:nope", emu.config.secret_id),
            ]),
            env: vec![],
            code: 1,
            expect: "SignatureDoesNotMatch",
        },
        Case {
            name: "unknown bucket",
            args: vec![
                "nosuch-1250000000".into(),
                m.clone(),
                "--endpoint".into(),
                ep.replace("127.0.0.1", "nosuch-1250000000.localhost"),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 1,
            expect: "no such bucket",
        },
        Case {
            name: "invalid bucket name",
            args: vec![
                "Bad_Name".into(),
                m.clone(),
                "--region".into(),
                "ap-guangzhou".into(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 2,
            expect: "is not of the form",
        },
        Case {
            name: "wrong region format",
            args: vec![
                BUCKET.into(),
                m.clone(),
                "--region".into(),
                "AP Guangzhou".into(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 2,
            expect: "invalid region",
        },
        Case {
            name: "no region or endpoint",
            args: vec![
                BUCKET.into(),
                m.clone(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 2,
            expect: "no endpoint",
        },
        Case {
            name: "bad endpoint URL",
            args: vec![
                BUCKET.into(),
                m.clone(),
                "--endpoint".into(),
                "ftp://x".into(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 2,
            expect: "invalid --endpoint",
        },
        Case {
            name: "unreachable endpoint",
            args: vec![
                BUCKET.into(),
                m.clone(),
                "--endpoint".into(),
                "http://127.0.0.1:1".into(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 1,
            expect: "cannot reach",
        },
        Case {
            name: "SSE-C key of the wrong length",
            args: base(&["--credential", &good, "--sse-c-key-file", &p(&short_key)]),
            env: vec![],
            code: 2,
            expect: "SSE-C key",
        },
        Case {
            name: "SSE-C key bad base64",
            args: base(&["--credential", &good, "--sse-c-key-file", &p(&bad_b64)]),
            env: vec![],
            code: 2,
            expect: "not valid base64",
        },
        Case {
            name: "SSE-C base64 of the wrong length",
            args: base(&[
                "--credential",
                &good,
                "--sse-c-key-file",
                &p(&b64_wrong_len),
            ]),
            env: vec![],
            code: 2,
            expect: "decode to 32 bytes",
        },
        Case {
            name: "SSE-C key as an option",
            args: base(&["--credential", &good, "-o", "sse_c_key=AAAA"]),
            env: vec![],
            code: 2,
            expect: "sse_c_key_file",
        },
        Case {
            name: "passwd file with loose permissions",
            args: base(&["--passwd-file", &p(&loose)]),
            env: vec![],
            code: 2,
            expect: "chmod 600",
        },
        Case {
            name: "YAML with an unknown key",
            args: base(&["--config", &p(&yaml_unknown)]),
            env: vec![],
            code: 2,
            expect: "unknown field",
        },
        Case {
            name: "YAML with a wrong type",
            args: base(&["--config", &p(&yaml_type)]),
            env: vec![],
            code: 2,
            expect: "config file",
        },
        Case {
            name: "YAML naming another bucket",
            args: base(&["--credential", &good, "--config", &p(&yaml_other_bucket)]),
            env: vec![],
            code: 2,
            expect: "names bucket",
        },
        Case {
            name: "mountpoint missing",
            args: at(&p(&d.join("nope")), &["--credential", &good]),
            env: vec![],
            code: 1,
            expect: "does not exist",
        },
        Case {
            name: "mountpoint is a file",
            args: at(&p(&a_file), &["--credential", &good]),
            env: vec![],
            code: 1,
            expect: "not a directory",
        },
        Case {
            name: "mountpoint not empty",
            args: at(&p(&full), &["--credential", &good]),
            env: vec![],
            code: 1,
            expect: "not empty",
        },
        Case {
            name: "unknown -o option",
            args: base(&["--credential", &good, "-o", "rw,frobnicate"]),
            env: vec![],
            code: 2,
            expect: "unknown mount option",
        },
        Case {
            name: "conflicting --allow-other and --allow-root",
            args: base(&["--credential", &good, "--allow-other", "--allow-root"]),
            env: vec![],
            code: 2,
            expect: "cannot be combined",
        },
        Case {
            name: "conflicting --sse and --sse-c-key-file",
            args: base(&[
                "--credential",
                &good,
                "--sse",
                "cos",
                "--sse-c-key-file",
                &p(&short_key),
            ]),
            env: vec![],
            code: 2,
            expect: "cannot be combined",
        },
        Case {
            name: "bad --sse value",
            args: base(&["--credential", &good, "--sse", "rot13"]),
            env: vec![],
            code: 2,
            expect: "invalid --sse",
        },
        Case {
            name: "bad --sse-kms-context",
            args: base(&[
                "--credential",
                &good,
                "--sse",
                "kms",
                "--sse-kms-context",
                "notjson",
            ]),
            env: vec![],
            code: 2,
            expect: "JSON object",
        },
        Case {
            name: "bad --part-size",
            args: base(&["--credential", &good, "--part-size", "10Q"]),
            env: vec![],
            code: 2,
            expect: "invalid size",
        },
        Case {
            name: "part size below COS's minimum",
            args: base(&["--credential", &good, "--part-size", "100k"]),
            env: vec![],
            code: 2,
            expect: "between 1M and 5G",
        },
        Case {
            name: "bad --metadata-ttl",
            args: base(&["--credential", &good, "--metadata-ttl", "soon"]),
            env: vec![],
            code: 2,
            expect: "invalid duration",
        },
        Case {
            name: "bad --file-mode",
            args: base(&["--credential", &good, "--file-mode", "999"]),
            env: vec![],
            code: 2,
            expect: "octal",
        },
        Case {
            name: "unknown flag",
            args: base(&["--credential", &good, "--frobnicate"]),
            env: vec![],
            code: 2,
            expect: "--frobnicate",
        },
        Case {
            name: "cosfs option cosmount refuses",
            args: base(&["--credential", &good, "-ocam_role=sts"]),
            env: vec![],
            code: 2,
            expect: "mount option cam_role is not supported: cosmount does not fetch",
        },
        Case {
            name: "cosfs storage class COS does not have",
            args: base(&["--credential", &good, "-ostorage_class=reduced_redundancy"]),
            env: vec![],
            code: 2,
            expect: "S3 storage class",
        },
        Case {
            name: "bad cosfs dbglevel",
            args: base(&["--credential", &good, "-odbglevel=loud"]),
            env: vec![],
            code: 2,
            expect: "dbglevel=loud: use crit, err, warn, info or dbg",
        },
        Case {
            name: "cosfs url with the bucket in its path",
            args: base(&[
                "--credential",
                &good,
                "-ourl=http://cos.ap-guangzhou.myqcloud.com/examplebucket-1250000000",
            ]),
            env: vec![],
            code: 2,
            expect: "invalid url=",
        },
        Case {
            name: "cosfs multipart_size not in MB",
            args: base(&["--credential", &good, "-omultipart_size=10M"]),
            env: vec![],
            code: 2,
            expect: "multipart_size=10M: expected a part size in MB",
        },
        Case {
            name: "cosfs use_sse=custom without keys",
            args: base(&["--credential", &good, "-ouse_sse=custom"]),
            env: vec![],
            code: 2,
            expect: "use_sse=custom:FILE",
        },
        Case {
            name: "cosfs SSE-C key file with a short key",
            args: base(&[
                "--credential",
                &good,
                &format!("-ouse_sse=custom:{}", p(&cosfs_short_key)),
            ]),
            env: vec![],
            code: 2,
            expect: "32 raw bytes",
        },
        Case {
            name: "cosfs bucket directory without a leading slash",
            args: vec![
                format!("{BUCKET}:my-dir"),
                m.clone(),
                "--credential".into(),
                good.clone(),
            ],
            env: vec![],
            code: 2,
            expect: "bucket argument",
        },
        Case {
            name: "cosfs utility mode",
            args: vec!["-u".into(), BUCKET.into()],
            env: vec![],
            code: 2,
            expect: "cosmount cleanup-uploads",
        },
        Case {
            name: "env credentials of the wrong account",
            args: base(&[]),
            env: vec![
                ("COS_SECRET_ID", "AKIDother".into()),
                ("COS_SECRET_KEY", "k".into()),
            ],
            code: 1,
            expect: "InvalidAccessKeyId",
        },
    ];
    assert!(cases.len() >= 15);
    check_all(&cases, &emu, &mnt);
}

/// Each case exits with its code and one line naming the problem, no secret, no mount.
fn check_all(cases: &[Case], emu: &TestEmulator, mnt: &std::path::Path) {
    for case in cases {
        let (code, stderr) = run(case);
        assert_eq!(
            code, case.code,
            "{}: exit code; stderr: {stderr}",
            case.name
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{}: one line, got {stderr:?}", case.name);
        assert!(
            lines[0].starts_with("cosmount: "),
            "{}: {stderr}",
            case.name
        );
        assert!(
            lines[0].contains(case.expect),
            "{}: expected {:?} in {stderr:?}",
            case.name,
            case.expect
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
        assert!(
            !stderr.contains(emu.config.secret_key.expose()),
            "{}: no secret in the message",
            case.name
        );
        assert!(!common::mount::is_mounted(mnt), "{}", case.name);
    }
}

#[test]
fn bad_input_to_the_servicer_gets_one_clear_line_and_a_non_zero_exit() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap().to_string();
    let ep = emu.endpoint();
    let good = emu.credential_arg();
    let wrong = format!("hmac:{}:not-the-key", emu.config.secret_id);
    let named = dir.path().join("named.yaml");
    std::fs::write(&named, format!("name: {BUCKET}\n")).unwrap();
    let with_dir = dir.path().join("work-dir.yaml");
    std::fs::write(&with_dir, "work_dir: /logs/\n").unwrap();
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = vec![
        Case {
            name: "buckets without credentials",
            args: args(&["buckets", "--endpoint", &ep]),
            env: vec![],
            code: 2,
            expect: "no credentials",
        },
        Case {
            name: "buckets with the wrong SecretKey",
            args: args(&["buckets", "--endpoint", &ep, "--credential", &wrong]),
            env: vec![],
            code: 1,
            expect: "SignatureDoesNotMatch",
        },
        Case {
            name: "buckets with an unknown SecretId",
            args: args(&["buckets", "--endpoint", &ep]),
            env: vec![
                ("COS_SECRET_ID", "AKIDother".into()),
                ("COS_SECRET_KEY", "k".into()),
            ],
            code: 1,
            expect: "InvalidAccessKeyId",
        },
        Case {
            name: "buckets at an unreachable endpoint",
            args: args(&[
                "buckets",
                "--endpoint",
                "http://127.0.0.1:1",
                "--credential",
                &good,
                "--connect-timeout",
                "2s",
            ]),
            env: vec![],
            code: 1,
            expect: "cannot reach",
        },
        Case {
            name: "buckets with an unknown flag",
            args: args(&["buckets", "--bogus"]),
            env: vec![],
            code: 2,
            expect: "--bogus",
        },
        Case {
            name: "buckets with a config file naming a bucket",
            args: args(&["buckets", "--config", named.to_str().unwrap()]),
            env: vec![],
            code: 2,
            expect: "remove name",
        },
        Case {
            name: "buckets with a config file's work_dir",
            args: args(&[
                "buckets",
                "--credential",
                &good,
                "--config",
                with_dir.to_str().unwrap(),
            ]),
            env: vec![],
            code: 2,
            expect: "work_dir",
        },
        Case {
            name: "--all-buckets without a mountpoint",
            args: args(&["--all-buckets", "--endpoint", &ep, "--credential", &good]),
            env: vec![],
            code: 2,
            expect: "--all-buckets needs MOUNTPOINT",
        },
        Case {
            name: "--all-buckets with a bucket too",
            args: args(&["--all-buckets", BUCKET, &m, "--credential", &good]),
            env: vec![],
            code: 2,
            expect: "give MOUNTPOINT alone",
        },
        Case {
            name: "--all-buckets with --prefix",
            args: args(&[
                "--all-buckets",
                &m,
                "--prefix",
                "logs/",
                "--credential",
                &good,
            ]),
            env: vec![],
            code: 2,
            expect: "--prefix",
        },
        Case {
            name: "--all-buckets with a data cache",
            args: args(&[
                "--all-buckets",
                &m,
                "--data-cache",
                dir.path().join("data-cache").to_str().unwrap(),
                "--credential",
                &good,
            ]),
            env: vec![],
            code: 2,
            expect: "--data-cache",
        },
        Case {
            name: "--all-buckets with a bad region for mkdir",
            args: args(&[
                "--all-buckets",
                &m,
                "--region",
                "Bad Region",
                "--credential",
                &good,
            ]),
            env: vec![],
            code: 2,
            expect: "invalid region",
        },
        Case {
            name: "--all-buckets with the wrong SecretKey",
            args: args(&[
                "--all-buckets",
                &m,
                "--endpoint",
                &ep,
                "--credential",
                &wrong,
            ]),
            env: vec![],
            code: 1,
            expect: "SignatureDoesNotMatch",
        },
        Case {
            name: "--all-buckets on a missing mountpoint",
            args: args(&[
                "--all-buckets",
                "/nonexistent/mnt",
                "--endpoint",
                &ep,
                "--credential",
                &good,
            ]),
            env: vec![],
            code: 1,
            expect: "does not exist",
        },
    ];
    check_all(&cases, &emu, &mnt);
}
