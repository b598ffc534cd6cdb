//! File attributes kept in COS user metadata, cosfs/s3fs-compatible: `x-cos-meta-mode` (the
//! whole `st_mode`, type bits included, decimal), `-uid`, `-gid`, `-mtime`, `-ctime`, `-atime`
//! (seconds, or seconds.fraction) and `-rdev` (a device number, decimal). Objects without them
//! get the mount's defaults and `Last-Modified`. A symlink is an object whose body is the
//! target and whose mode has `S_IFLNK`; FIFOs, sockets and devices are empty objects whose mode
//! carries their type, as cosfs and s3fs store them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_MTIME: &str = "mtime";
pub const META_CTIME: &str = "ctime";
pub const META_ATIME: &str = "atime";
pub const META_RDEV: &str = "rdev";

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    /// The type bits of `st_mode`.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => S_IFREG,
            Kind::Dir => S_IFDIR,
            Kind::Symlink => S_IFLNK,
            Kind::Fifo => S_IFIFO,
            Kind::Socket => S_IFSOCK,
            Kind::CharDevice => S_IFCHR,
            Kind::BlockDevice => S_IFBLK,
        }
    }

    /// The kind of an `st_mode`'s type bits (`None` for a type this mount does not know).
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & S_IFMT {
            S_IFREG => Kind::File,
            S_IFDIR => Kind::Dir,
            S_IFLNK => Kind::Symlink,
            S_IFIFO => Kind::Fifo,
            S_IFSOCK => Kind::Socket,
            S_IFCHR => Kind::CharDevice,
            S_IFBLK => Kind::BlockDevice,
            _ => return None,
        })
    }

    /// Whether the kind is a special file (no content; the kernel serves it).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice
        )
    }
}

/// What `stat` shows, in the core's own terms (fuse.rs converts it for the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub atime: SystemTime,
    /// The device number of a character or block device.
    pub rdev: u32,
    /// Names the file has: 0 once removed while still open, 2 for a directory (its
    /// subdirectories are not counted: that would take a listing per stat).
    pub nlink: u32,
}

/// The mount-wide defaults for objects without attribute metadata.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
}

/// Attributes as found in (or destined for) an object's user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
    pub rdev: Option<u32>,
    /// Extended attributes (`x-cos-meta-xattr`, see xattr.rs); `Some` of an empty map removes
    /// the header.
    pub xattrs: Option<super::xattr::Xattrs>,
}

/// Parses `1700000000` or `1700000000.25`.
pub fn parse_mtime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    let digits: String = frac
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .take(9)
        .collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A decimal user-metadata value (mode, uid, gid, rdev).
fn number(user: &BTreeMap<String, String>, key: &str) -> Option<u32> {
    user.get(key).and_then(|v| v.trim().parse::<u32>().ok())
}

/// Whole seconds when there is no fraction (what cosfs and s3fs write), else `secs.nnnnnnnnn`.
pub fn format_mtime(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    }
}

impl MetaAttrs {
    pub fn parse(user: &BTreeMap<String, String>) -> Self {
        let num = |k: &str| number(user, k);
        let time = |k: &str| user.get(k).and_then(|v| parse_mtime(v));
        MetaAttrs {
            mode: Self::mode_of(user),
            uid: num(META_UID),
            gid: num(META_GID),
            mtime: time(META_MTIME),
            ctime: time(META_CTIME),
            atime: time(META_ATIME),
            rdev: num(META_RDEV),
            xattrs: user
                .get(super::xattr::META_XATTR)
                .map(|h| super::xattr::decode(h)),
        }
    }

    /// The mode alone, as `parse` reads it (without decoding the rest, extended attributes
    /// among them).
    pub fn mode_of(user: &BTreeMap<String, String>) -> Option<u32> {
        number(user, META_MODE)
    }

    /// Writes these attributes into `user`, leaving other metadata as it is.
    pub fn apply(&self, user: &mut BTreeMap<String, String>) {
        if let Some(m) = self.mode {
            user.insert(META_MODE.into(), m.to_string());
        }
        if let Some(u) = self.uid {
            user.insert(META_UID.into(), u.to_string());
        }
        if let Some(g) = self.gid {
            user.insert(META_GID.into(), g.to_string());
        }
        if let Some(r) = self.rdev {
            user.insert(META_RDEV.into(), r.to_string());
        }
        if let Some(x) = &self.xattrs {
            match super::xattr::encode(x) {
                Some(h) => user.insert(super::xattr::META_XATTR.into(), h),
                None => user.remove(super::xattr::META_XATTR),
            };
        }
        for (name, t) in [
            (META_MTIME, self.mtime),
            (META_CTIME, self.ctime),
            (META_ATIME, self.atime),
        ] {
            if let Some(t) = t {
                user.insert(name.into(), format_mtime(t));
            }
        }
    }

    /// Overlays the fields set in `other`.
    pub fn merge(&mut self, other: &MetaAttrs) {
        self.mode = other.mode.or(self.mode);
        self.uid = other.uid.or(self.uid);
        self.gid = other.gid.or(self.gid);
        self.mtime = other.mtime.or(self.mtime);
        self.ctime = other.ctime.or(self.ctime);
        self.atime = other.atime.or(self.atime);
        self.rdev = other.rdev.or(self.rdev);
        if other.xattrs.is_some() {
            self.xattrs = other.xattrs.clone();
        }
    }

    /// The kind an object with this metadata has (a key without a trailing slash): what its
    /// mode says, a regular file when it says nothing (or says directory: a key without a
    /// slash holds a file's bytes).
    pub fn object_kind(&self) -> Kind {
        match self.mode.and_then(Kind::from_mode) {
            Some(Kind::Dir) | None => Kind::File,
            Some(k) => k,
        }
    }

    /// Only the times differ from `MetaAttrs::default()` (or nothing does).
    pub fn only_times(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.rdev.is_none()
            && self.xattrs.is_none()
    }
}

/// Attributes of an object or directory from its metadata and the mount's defaults.
pub fn attr_from(
    ino: Ino,
    kind: Kind,
    size: u64,
    meta: &MetaAttrs,
    last_modified: SystemTime,
    defaults: &Defaults,
) -> Attr {
    let default_perm = match kind {
        Kind::Dir => defaults.dir_mode,
        Kind::Symlink => 0o777,
        _ => defaults.file_mode,
    };
    let mtime = meta.mtime.unwrap_or(last_modified);
    Attr {
        ino,
        kind,
        size,
        perm: meta
            .mode
            .map(|m| (m & 0o7777) as u16)
            .unwrap_or(default_perm),
        uid: meta.uid.unwrap_or(defaults.uid),
        gid: meta.gid.unwrap_or(defaults.gid),
        mtime,
        // Objects written by tools that keep no ctime: their last change is when the object
        // was last written (or had its metadata replaced), unless an mtime says later.
        ctime: meta.ctime.unwrap_or(last_modified.max(mtime)),
        // Reads do not update atime (as with `noatime`); without one, it shows the mtime.
        atime: meta.atime.unwrap_or(mtime),
        rdev: meta.rdev.unwrap_or(0),
        nlink: if kind == Kind::Dir { 2 } else { 1 },
    }
}

/// The full `st_mode` for metadata.
pub fn mode_bits(kind: Kind, perm: u16) -> u32 {
    kind.type_bits() | (perm as u32 & 0o7777)
}

/// `mode` after a change of content by a process that may not keep set-ID bits (without
/// CAP_FSETID), as Linux file systems do it: the set-user-ID bit goes, and the set-group-ID bit
/// of a group-executable file (without group execute it marks mandatory locking, and stays).
pub fn without_setid(mode: u32) -> u32 {
    let mut m = mode & !libc::S_ISUID;
    if m & libc::S_IXGRP != 0 {
        m &= !libc::S_ISGID;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_content_clears_set_id_bits_as_linux_does() {
        assert_eq!(without_setid(0o106755), 0o100755);
        assert_eq!(without_setid(0o104755), 0o100755);
        // Set-group-ID without group execute marks mandatory locking: it stays.
        assert_eq!(without_setid(0o102745), 0o102745);
        assert_eq!(without_setid(0o100644), 0o100644);
    }

    #[test]
    fn cosfs_metadata_round_trips() {
        let mut user = BTreeMap::new();
        user.insert("mode".to_string(), "33188".to_string());
        user.insert("uid".to_string(), "1000".to_string());
        user.insert("mtime".to_string(), "1700000000.5".to_string());
        let m = MetaAttrs::parse(&user);
        assert_eq!(m.mode, Some(0o100644));
        assert_eq!(m.uid, Some(1000));
        assert_eq!(m.gid, None);
        assert_eq!(
            m.mtime,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
        let mut out = BTreeMap::new();
        m.apply(&mut out);
        assert_eq!(MetaAttrs::parse(&out), m);
        assert_eq!(format_mtime(UNIX_EPOCH + Duration::from_secs(5)), "5");
    }

    #[test]
    fn defaults_fill_the_gaps_and_symlinks_are_recognised() {
        let d = Defaults {
            uid: 7,
            gid: 8,
            file_mode: 0o644,
            dir_mode: 0o755,
        };
        let lnk = MetaAttrs {
            mode: Some(mode_bits(Kind::Symlink, 0o777)),
            ..Default::default()
        };
        assert_eq!(lnk.object_kind(), Kind::Symlink);
        let a = attr_from(2, Kind::File, 3, &MetaAttrs::default(), UNIX_EPOCH, &d);
        assert_eq!((a.perm, a.uid, a.gid), (0o644, 7, 8));
        let a = attr_from(2, Kind::Dir, 0, &MetaAttrs::default(), UNIX_EPOCH, &d);
        assert_eq!(a.perm, 0o755);
        assert_eq!(parse_mtime("garbage"), None);
    }
}
