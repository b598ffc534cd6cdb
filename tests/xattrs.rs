//! Extended attributes and POSIX ACLs through real mounts: stored in `x-cos-meta-xattr` as s3fs
//! and cosfs store theirs (checked with the official SDK both ways), kept across rename, chmod,
//! rewrites and remounts, with setxattr's flags and COS's metadata limits as errnos, and used by
//! `setfattr`/`getfattr`, `setfacl`/`getfacl`, `cp -a` and `rsync -aX`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use common::mount::Mount;
use common::{TestEmulator, sdk_ok, sh, sh_status};

fn set(path: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// The `x-cos-meta-xattr` header of `key` as the official SDK sees it, decoded the way s3fs
/// decodes it (URL-decode, JSON, base64).
fn stored_xattrs(emu: &TestEmulator, key: &str) -> BTreeMap<String, Vec<u8>> {
    let head: serde_json::Value = serde_json::from_str(&sdk_ok(emu, &["head", key])).unwrap();
    let Some(h) = head["x-cos-meta-xattr"].as_str() else {
        return BTreeMap::new();
    };
    let json = percent_encoding::percent_decode_str(h)
        .decode_utf8()
        .unwrap()
        .into_owned();
    let map: BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
    map.into_iter()
        .map(|(k, v)| {
            (
                k,
                base64::engine::general_purpose::STANDARD.decode(v).unwrap(),
            )
        })
        .collect()
}

#[test]
fn attributes_round_trip_in_the_format_s3fs_and_cosfs_use() {
    let emu = TestEmulator::start();
    let mut m = Mount::start(&emu, &[]);
    std::fs::write(m.join("f"), b"data").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    sh(
        m.path(),
        "setfattr -n user.color -v blue f && setfattr -n user.bin -v 0x00ff10 f \
         && setfattr -n user.where -v 'dir value' d",
    );
    let out = sh(m.path(), "getfattr -d --absolute-names f d");
    assert!(out.contains("user.color=\"blue\""), "{out}");
    assert!(out.contains("user.bin=0sAP8Q"), "binary values: {out}");
    assert!(out.contains("user.where=\"dir value\""), "{out}");
    let f = stored_xattrs(&emu, "f");
    assert_eq!(f.get("user.color").unwrap(), b"blue");
    assert_eq!(f.get("user.bin").unwrap(), &[0u8, 0xff, 0x10]);
    assert_eq!(
        stored_xattrs(&emu, "d/").get("user.where").unwrap(),
        b"dir value"
    );
    // setxattr's flags, removal, and COS's limits as errnos of the call itself.
    assert_eq!(
        set(&m.join("f"), "user.color", b"x", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    assert_eq!(
        set(&m.join("f"), "user.none", b"x", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    set(&m.join("f"), "user.color", b"green", libc::XATTR_REPLACE).unwrap();
    assert_eq!(
        set(&m.join("f"), "user.big", &[b'v'; 1800], 0),
        Err(libc::E2BIG)
    );
    sh(m.path(), "setfattr -x user.bin f");
    let (ok, out) = sh_status(m.path(), "setfattr -x user.bin f");
    assert!(!ok && out.contains("No such attribute"), "ENODATA: {out}");
    assert_eq!(
        stored_xattrs(&emu, "f").into_keys().collect::<Vec<_>>(),
        ["user.color"]
    );
    // Kept across rename, chmod, a rewrite, and a remount.
    sh(m.path(), "mv f g && chmod 600 g && echo rewritten > g");
    assert_eq!(sh(m.path(), "cat g"), "rewritten\n");
    m.unmount();
    let m = Mount::start(&emu, &[]);
    assert_eq!(
        sh(m.path(), "getfattr --only-values -n user.color g"),
        "green"
    );
    // Attributes another s3fs-compatible client set show up here.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"theirs").unwrap();
    let header = format!(
        "xattr={}",
        percent_encoding::utf8_percent_encode(
            r#"{"user.from":"Y29zZnM="}"#,
            percent_encoding::NON_ALPHANUMERIC
        )
    );
    sdk_ok(
        &emu,
        &[
            "put",
            "theirs",
            src.path().to_str().unwrap(),
            "--meta",
            &header,
        ],
    );
    assert_eq!(
        sh(m.path(), "getfattr --only-values -n user.from theirs"),
        "cosfs"
    );
}

#[test]
fn the_metadata_total_is_refused_with_enospc() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &[]);
    std::fs::write(m.join("f"), b"x").unwrap();
    // Each fits a header; together they pass COS's 4 KB of user metadata... once the xattr
    // header holds about 2 KB and the others the rest.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"x").unwrap();
    let a = format!("note-a={}", "a".repeat(1900));
    let b = format!("note-b={}", "b".repeat(1900));
    sdk_ok(
        &emu,
        &[
            "put",
            "full",
            src.path().to_str().unwrap(),
            "--meta",
            &a,
            "--meta",
            &b,
        ],
    );
    assert_eq!(
        set(&m.join("full"), "user.k", &[b'v'; 400], 0),
        Err(libc::ENOSPC)
    );
    set(&m.join("full"), "user.k", b"small", 0).unwrap();
}

#[test]
fn acls_cp_a_and_rsync_keep_attributes() {
    let emu = TestEmulator::start();
    // allow_other: the ACL check is of another user.
    let m = Mount::start(&emu, &["--allow-other"]);
    let src = tempfile::tempdir().unwrap();
    sh(
        src.path(),
        "mkdir tree && echo one > tree/one && echo two > tree/two \
         && setfattr -n user.tag -v first tree/one && setfattr -n user.tag -v dir tree",
    );
    // POSIX ACLs are extended attributes too, enforced by the kernel, kept in step with the
    // mode, and inherited from a directory's default ACL.
    sh(
        m.path(),
        "echo acl > a && setfacl -m u:nobody:rw,g:daemon:r a",
    );
    let acl = sh(m.path(), "getfacl --omit-header a");
    assert!(acl.contains("user:nobody:rw-"), "{acl}");
    assert!(acl.contains("group:daemon:r--"), "{acl}");
    assert!(stored_xattrs(&emu, "a").contains_key("system.posix_acl_access"));
    sh(
        m.path(),
        "echo secret > s && chmod 644 s && setfacl -m u:nobody:--- s",
    );
    let (ok, out) = sh_status(
        m.path(),
        &format!("su nobody -s /bin/sh -c 'cat {}/s'", m.path().display()),
    );
    assert!(
        !ok && out.contains("Permission denied"),
        "the ACL denies nobody: {out}"
    );
    sh(m.path(), "chmod 600 a");
    let acl = sh(m.path(), "getfacl --omit-header a");
    assert!(
        acl.contains("mask::---") && acl.contains("other::---"),
        "chmod: {acl}"
    );
    // An ACL that says no more than a mode sets the mode (as sed -i and cp -p do).
    sh(
        m.path(),
        "echo x > plain && chmod 600 plain && setfacl --set u::rw,g::r,o::r plain",
    );
    assert_eq!(sh(m.path(), "stat -c %a plain"), "644\n");
    assert!(!stored_xattrs(&emu, "plain").contains_key("system.posix_acl_access"));
    sh(
        m.path(),
        "mkdir inherit && setfacl -d -m u:nobody:rwx inherit && touch inherit/f && mkdir inherit/sub",
    );
    let f = sh(m.path(), "getfacl --omit-header inherit/f");
    assert!(f.contains("user:nobody:rwx"), "inherited by a file: {f}");
    let sub = sh(m.path(), "getfacl --omit-header inherit/sub");
    assert!(
        sub.contains("default:user:nobody:rwx"),
        "inherited by a directory: {sub}"
    );
    sh(
        m.path(),
        &format!(
            "cp -a {}/tree cp && rsync -aX {}/tree/ rs/",
            src.path().display(),
            src.path().display()
        ),
    );
    for dir in ["cp", "rs"] {
        assert_eq!(
            sh(
                m.path(),
                &format!("getfattr --only-values -n user.tag {dir}/one")
            ),
            "first",
            "{dir}"
        );
        assert_eq!(
            sh(
                m.path(),
                &format!("getfattr --only-values -n user.tag {dir}")
            ),
            "dir",
            "{dir}"
        );
        assert_eq!(
            std::fs::read(m.join(&format!("{dir}/two"))).unwrap(),
            b"two\n"
        );
    }
    assert_eq!(
        stored_xattrs(&emu, "rs/one").get("user.tag").unwrap(),
        b"first"
    );
}

#[test]
fn noxattr_turns_them_off() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["-o", "noxattr"]);
    std::fs::write(m.join("f"), b"x").unwrap();
    assert_eq!(set(&m.join("f"), "user.k", b"v", 0), Err(libc::EOPNOTSUPP));
    let (ok, out) = sh_status(m.path(), "getfattr -n user.k f");
    assert!(!ok && out.contains("Operation not supported"), "{out}");
}
