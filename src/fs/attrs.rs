//! File attributes kept in COS user metadata, cosfs/s3fs-compatible: `x-cos-meta-mode` (the
//! whole `st_mode`, type bits included, decimal), `-uid`, `-gid`, `-mtime` (seconds, or
//! seconds.fraction). Objects without them get the mount's defaults and `Last-Modified`.
//! A symlink is an object whose body is the target and whose mode has `S_IFLNK`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;

pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_MTIME: &str = "mtime";

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
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
        let num = |k: &str| user.get(k).and_then(|v| v.trim().parse::<u32>().ok());
        MetaAttrs {
            mode: num(META_MODE),
            uid: num(META_UID),
            gid: num(META_GID),
            mtime: user.get(META_MTIME).and_then(|v| parse_mtime(v)),
        }
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
        if let Some(t) = self.mtime {
            user.insert(META_MTIME.into(), format_mtime(t));
        }
    }

    /// Overlays the fields set in `other`.
    pub fn merge(&mut self, other: &MetaAttrs) {
        if other.mode.is_some() {
            self.mode = other.mode;
        }
        if other.uid.is_some() {
            self.uid = other.uid;
        }
        if other.gid.is_some() {
            self.gid = other.gid;
        }
        if other.mtime.is_some() {
            self.mtime = other.mtime;
        }
    }

    /// The kind an object with this metadata has (a key without a trailing slash).
    pub fn object_kind(&self) -> Kind {
        match self.mode.map(|m| m & S_IFMT) {
            Some(S_IFLNK) => Kind::Symlink,
            _ => Kind::File,
        }
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
        Kind::File => defaults.file_mode,
    };
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
        mtime: meta.mtime.unwrap_or(last_modified),
    }
}

/// The full `st_mode` for metadata.
pub fn mode_bits(kind: Kind, perm: u16) -> u32 {
    let t = match kind {
        Kind::File => S_IFREG,
        Kind::Dir => S_IFDIR,
        Kind::Symlink => S_IFLNK,
    };
    t | (perm as u32 & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

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
