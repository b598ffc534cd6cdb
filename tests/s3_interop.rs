//! The S3 dialect against a server nobody here wrote: SeaweedFS verifying SigV4, through real
//! mounts of `cosmount --api s3`, and s3fs (the Debian package) on the same bucket showing what
//! cosmount wrote the same way, and the other way round.
//!
//! One SeaweedFS serves the whole file (it takes seconds to start and holds fixed ports), so the
//! checks run in turn inside one test.

mod common;

use std::path::Path;

use common::weed::{SECRET_KEY, Weed};
use common::{sh, sh_status};

/// mode, owner, group, mtime and type as `stat` shows them, for each path, one per line.
fn stats(root: &Path, paths: &[&str]) -> String {
    let list = paths.join(" ");
    sh(root, &format!("stat -c '%n %a %u %g %Y %F' {list}"))
}

fn wrong_secret_fails_the_mount_with_one_line(weed: &Weed) {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = weed
        .mount_command("not-the-secret", &dir)
        .arg(&weed.bucket)
        .arg(&mnt)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted with a wrong secret");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got {stderr:?}");
    assert!(lines[0].starts_with("cosmount: "), "{stderr}");
    assert!(
        lines[0].contains("SignatureDoesNotMatch") || lines[0].contains("AccessDenied"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret") && !stderr.contains(SECRET_KEY));
    assert!(!common::mount::is_mounted(&mnt));
}

/// A tree of small and middling files in nested directories, with a name that needs encoding.
fn make_tree(root: &Path) {
    for d in ["a", "a/b", "a/b/c", "d", "with space"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut n = 0u64;
    for d in ["", "a", "a/b", "a/b/c", "d", "with space"] {
        for i in 0..6 {
            n += 1;
            let size = [0, 1, 100, 4096, 70_000, 1_500_000][i];
            std::fs::write(
                root.join(d).join(format!("f{i} +%.txt")),
                common::pattern(size, n),
            )
            .unwrap();
        }
    }
}

#[test]
fn seaweedfs_through_a_mount_and_beside_s3fs() {
    let weed = Weed::start("interop");
    wrong_secret_fails_the_mount_with_one_line(&weed);

    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    make_tree(&tree);
    let big = local.path().join("big.bin");
    sh(
        local.path(),
        "head -c 300M /dev/urandom > big.bin && md5sum big.bin | cut -d' ' -f1 > big.md5",
    );

    let written = {
        let m = weed.mount(&[]);
        let root = m.path();
        // cp -r and diff -r of a tree.
        sh(root, &format!("cp -r {} tree", tree.display()));
        sh(root, &format!("diff -r {} tree", tree.display()));
        // A file of many parts.
        sh(root, &format!("cp {} big.bin", big.display()));
        assert_eq!(
            std::fs::metadata(root.join("big.bin")).unwrap().len(),
            300 << 20
        );
        sh(root, &format!("cmp {} big.bin", big.display()));
        // Renames of a file and of a directory.
        sh(
            root,
            "mv 'tree/f3 +%.txt' tree/renamed.txt && mv tree/a tree/moved",
        );
        assert!(!root.join("tree/a").exists());
        sh(
            root,
            &format!(
                "diff -r {}/a tree/moved && cmp '{}/f3 +%.txt' tree/renamed.txt",
                tree.display(),
                tree.display()
            ),
        );
        // Attributes and a symlink. (Not a directory's: SeaweedFS keeps no user metadata on
        // a key ending in `/`, for any client.)
        sh(
            root,
            "chmod 640 tree/renamed.txt && chown 1234:5678 tree/renamed.txt \
             && touch -d '2001-02-03 04:05:06' tree/renamed.txt \
             && chmod 600 tree/d/f0* && touch -d '2002-03-04 05:06:07' tree/d/f0* \
             && ln -s renamed.txt tree/link",
        );
        assert_eq!(
            std::fs::read_link(root.join("tree/link")).unwrap(),
            Path::new("renamed.txt")
        );
        stats(
            root,
            &["tree/renamed.txt", "tree/d/f0*", "tree/moved/b/f1*"],
        )
    };
    assert!(written.contains("tree/renamed.txt 640 1234 5678 981173106 regular file"));

    // What was written persists across a remount.
    {
        let m = weed.mount(&[]);
        let root = m.path();
        assert_eq!(
            stats(
                root,
                &["tree/renamed.txt", "tree/d/f0*", "tree/moved/b/f1*"]
            ),
            written
        );
        assert_eq!(
            std::fs::read_link(root.join("tree/link")).unwrap(),
            Path::new("renamed.txt")
        );
        sh(
            root,
            &format!(
                "md5sum big.bin | grep -q $(cat {}/big.md5)",
                local.path().display()
            ),
        );
        sh(
            root,
            &format!("diff -r {}/a/b tree/moved/b", tree.display()),
        );
    }

    // s3fs sees what cosmount wrote: the same modes, owners, times, and the symlink.
    {
        let s = weed.s3fs();
        let root = s.path();
        assert_eq!(
            stats(root, &["tree/renamed.txt", "tree/d/f0*"]),
            stats_of(&written, &["tree/renamed.txt", "tree/d/f0 +%.txt"])
        );
        assert_eq!(
            std::fs::read_link(root.join("tree/link")).unwrap(),
            Path::new("renamed.txt")
        );
        sh(
            root,
            &format!("cmp '{}/f3 +%.txt' tree/renamed.txt", tree.display()),
        );
        // And cosmount sees what s3fs writes.
        sh(
            root,
            "mkdir from-s3fs && echo hello > from-s3fs/file && chmod 604 from-s3fs/file \
             && chown 4321:8765 from-s3fs/file && touch -d '1999-12-31 23:59:58' from-s3fs/file \
             && ln -s file from-s3fs/link",
        );
    }
    let by_s3fs = {
        let s = weed.s3fs();
        stats(s.path(), &["from-s3fs/file"])
    };
    assert!(by_s3fs.contains("from-s3fs/file 604 4321 8765 946684798 regular file"));
    {
        let m = weed.mount(&[]);
        let root = m.path();
        assert_eq!(stats(root, &["from-s3fs/file"]), by_s3fs);
        assert_eq!(
            std::fs::read_to_string(root.join("from-s3fs/file")).unwrap(),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("from-s3fs/link")).unwrap(),
            Path::new("file")
        );
        // rm -r of a tree cleans the bucket of it.
        sh(root, "rm -r tree from-s3fs big.bin");
        let (ok, out) = sh_status(root, "ls -A");
        assert!(ok && out.trim().is_empty(), "left: {out}");
    }
}

/// The lines of `all` (from `stats`) for `paths`, in their order.
fn stats_of(all: &str, paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            let line = all
                .lines()
                .find(|l| l.starts_with(&format!("{p} ")))
                .unwrap_or_else(|| panic!("{p} not in {all}"));
            format!("{line}\n")
        })
        .collect()
}
