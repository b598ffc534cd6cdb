//! What objects written through a mount carry besides their bytes, checked with the official
//! SDK: a Content-Type from the file's name, and the storage class, kept across renames,
//! metadata copies and rewrites; archived objects that are not restored fail reads with EIO
//! and a log line that says what to do.

mod common;

use common::mount::Mount;
use common::{TestEmulator, pattern, sdk_ok, sh, sh_status};

fn head(emu: &TestEmulator, key: &str) -> serde_json::Value {
    serde_json::from_str(&sdk_ok(emu, &["head", key])).unwrap()
}

fn content_type(emu: &TestEmulator, key: &str) -> String {
    head(emu, key)["content-type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn storage_class(emu: &TestEmulator, key: &str) -> String {
    head(emu, key)["x-cos-storage-class"]
        .as_str()
        .unwrap_or("STANDARD")
        .to_string()
}

#[test]
fn new_objects_get_their_content_type_from_the_name_and_keep_it() {
    let emu = TestEmulator::start();
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    sh(
        m.path(),
        "echo '<p>hi</p>' > index.html && echo '{}' > data.json && echo x > style.css \
         && echo x > notes.txt && echo x > archive.tar.gz && echo x > README \
         && echo x > odd.zzqq && touch empty.pdf \
         && head -c 3000000 /dev/zero > movie.mp4",
    );
    for (key, ty) in [
        ("index.html", "text/html"),
        ("data.json", "application/json"),
        ("style.css", "text/css"),
        ("notes.txt", "text/plain"),
        ("archive.tar.gz", "application/gzip"),
        ("empty.pdf", "application/pdf"),
        // Multipart: the type goes with Initiate.
        ("movie.mp4", "video/mp4"),
        ("README", "application/octet-stream"),
        ("odd.zzqq", "application/octet-stream"),
    ] {
        assert_eq!(content_type(&emu, key), ty, "{key}");
    }
    // Kept when the name changes, on metadata copies and on rewrites.
    sh(
        m.path(),
        "mv index.html page.txt && chmod 600 page.txt && echo '<p>new</p>' > page.txt",
    );
    assert_eq!(content_type(&emu, "page.txt"), "text/html");
}

#[test]
fn the_storage_class_is_set_kept_and_archives_say_why_they_cannot_be_read() {
    let emu = TestEmulator::start();
    let ia = Mount::start(
        &emu,
        &["--storage-class", "standard_ia", "--part-size", "1M"],
    );
    sh(
        ia.path(),
        "mkdir d && echo small > d/small && head -c 3000000 /dev/urandom > d/big",
    );
    assert_eq!(storage_class(&emu, "d/small"), "STANDARD_IA");
    assert_eq!(storage_class(&emu, "d/big"), "STANDARD_IA", "multipart");
    drop(ia);
    // A mount without the option keeps the class of what it rewrites, renames and chmods.
    let m = Mount::start(&emu, &["--part-size", "1M"]);
    sh(
        m.path(),
        "echo more >> d/small && chmod 600 d/big && mv d e && mv e/small e/renamed",
    );
    assert_eq!(storage_class(&emu, "e/renamed"), "STANDARD_IA");
    assert_eq!(storage_class(&emu, "e/big"), "STANDARD_IA");
    assert_eq!(sh(m.path(), "cat e/renamed"), "small\nmore\n");
    // New files of this mount are STANDARD.
    std::fs::write(m.join("plain"), b"x").unwrap();
    assert_eq!(storage_class(&emu, "plain"), "STANDARD");
    // An archived object that is not restored: EIO, and the log says what to do.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), pattern(1000, 3)).unwrap();
    sdk_ok(
        &emu,
        &[
            "put",
            "cold",
            src.path().to_str().unwrap(),
            "--storage-class",
            "ARCHIVE",
        ],
    );
    assert_eq!(std::fs::metadata(m.join("cold")).unwrap().len(), 1000);
    let e = std::fs::read(m.join("cold")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    let log = m.log_text();
    assert!(
        log.contains("cannot read cold: it is in COS archive storage") && log.contains("restore"),
        "{log}"
    );
    let (ok, _) = sh_status(m.path(), "cat cold");
    assert!(!ok);
}
