//! Extended attributes (and POSIX ACLs, which are extended attributes named
//! `system.posix_acl_access` and `system.posix_acl_default`), stored in one user-metadata
//! header, `x-cos-meta-xattr`, encoded as s3fs and cosfs encode theirs: a JSON object of name
//! → base64 of the value, URL-encoded. Attributes set by cosfs or s3fs show up here and the other
//! way round. A change is made to the freshest metadata (HEAD, or the open file's state) and
//! stored as chmod stores a mode: a copy of the object onto itself, or the next commit of an
//! open file. COS's limits on user metadata (cos-protocol.md §4: 2 KB a header, 4 KB in all)
//! are checked here, so an attribute too large fails its own call, never a later upload.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use base64::Engine;

use super::attrs::{Ino, Kind, MetaAttrs, ROOT_INO, mode_bits};
use super::error::{FsError, FsResult};
use super::meta_cache::Stat;
use super::{Filesystem, acl};

/// Name → value.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// The user-metadata name (after `x-cos-meta-`) of the header holding them.
pub const META_XATTR: &str = "xattr";
/// COS's limit on one user-metadata header, name and value (cos-protocol.md §4).
const HEADER_LIMIT: usize = 2048;
/// COS's limit on all user-metadata headers together.
const TOTAL_LIMIT: usize = 4096;
const META_PREFIX: &str = "x-cos-meta-";
/// The longest attribute name Linux allows (XATTR_NAME_MAX).
const NAME_MAX: usize = 255;

/// s3fs's URL encoding: everything but ASCII letters, digits and `/ . - _ ~` as `%XX`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/.-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses the header's value; a malformed one (or one with a malformed entry) gives what can be
/// read of it, with a warning, never an error: other attributes stay usable.
pub fn decode(header: &str) -> Xattrs {
    let json = percent_encoding::percent_decode_str(header).decode_utf8_lossy();
    let map: HashMap<String, String> = match serde_json::from_str(&json) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("ignoring a malformed x-cos-meta-xattr header: {e}");
            return Xattrs::new();
        }
    };
    map.into_iter()
        .filter_map(|(name, b64)| {
            match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                Ok(v) => Some((name, v)),
                Err(_) => {
                    log::warn!("ignoring the extended attribute {name:?}: its value is not base64");
                    None
                }
            }
        })
        .collect()
}

/// The header's value for `attrs` (`None` when there are none: the header is left out).
pub fn encode(attrs: &Xattrs) -> Option<String> {
    if attrs.is_empty() {
        return None;
    }
    let map: BTreeMap<&str, String> = attrs
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                base64::engine::general_purpose::STANDARD.encode(v),
            )
        })
        .collect();
    Some(url_encode(
        &serde_json::to_string(&map).expect("a map of strings serialises"),
    ))
}

/// A change of one attribute.
#[derive(Debug, Clone)]
pub enum XattrOp {
    /// setxattr(2): `create` is XATTR_CREATE (fail if it exists), `replace` XATTR_REPLACE
    /// (fail unless it exists).
    Set {
        name: String,
        value: Vec<u8>,
        create: bool,
        replace: bool,
    },
    Remove(String),
}

impl XattrOp {
    fn apply(&self, attrs: &mut Xattrs) -> FsResult<()> {
        match self {
            XattrOp::Set {
                name,
                value,
                create,
                replace,
            } => {
                let exists = attrs.contains_key(name);
                if *create && exists {
                    return Err(FsError::Exists);
                }
                if *replace && !exists {
                    return Err(FsError::NoAttr);
                }
                attrs.insert(name.clone(), value.clone());
            }
            XattrOp::Remove(name) => {
                attrs.remove(name).ok_or(FsError::NoAttr)?;
            }
        }
        Ok(())
    }

    /// The attribute change to store, computed from `user`, the freshest user metadata of the
    /// object (a `kind`): E2BIG when the attributes no longer fit one header, ENOSPC when the
    /// object's metadata would pass COS's total. Setting an access ACL sets the mode it
    /// implies, and one that says no more than a mode is not kept (acl.rs).
    pub fn change_from(&self, user: &BTreeMap<String, String>, kind: Kind) -> FsResult<MetaAttrs> {
        let current = MetaAttrs::parse(user);
        let mut attrs = current.xattrs.clone().unwrap_or_default();
        self.apply(&mut attrs)?;
        let mut mode = None;
        if let XattrOp::Set { name, value, .. } = self
            && name == acl::ACCESS
        {
            let (perm, equivalent) =
                acl::mode_of_access(value).ok_or(FsError::Invalid("malformed POSIX ACL"))?;
            let special = current.mode.unwrap_or(0) & 0o7000;
            mode = Some(mode_bits(kind, 0) | special | perm);
            if equivalent {
                attrs.remove(acl::ACCESS);
            }
        }
        let header = encode(&attrs);
        let header_len = header
            .as_ref()
            .map_or(0, |h| META_PREFIX.len() + META_XATTR.len() + h.len());
        if header_len > HEADER_LIMIT {
            return Err(FsError::TooBig);
        }
        let others: usize = user
            .iter()
            .filter(|(k, _)| k.as_str() != META_XATTR)
            .map(|(k, v)| META_PREFIX.len() + k.len() + v.len())
            .sum();
        if others + header_len > TOTAL_LIMIT {
            return Err(FsError::NoSpace);
        }
        Ok(MetaAttrs {
            mode,
            xattrs: Some(attrs),
            ctime: Some(SystemTime::now()),
            ..MetaAttrs::default()
        })
    }
}

/// What getxattr and listxattr answer: the size asked for (`size` 0), or the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

fn sized(data: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(data.len() as u32))
    } else if data.len() > size as usize {
        Err(FsError::Range)
    } else {
        Ok(XattrReply::Data(data))
    }
}

impl Filesystem {
    fn check_xattrs(&self) -> FsResult<()> {
        if self.cfg.xattrs {
            Ok(())
        } else {
            Err(FsError::XattrsOff)
        }
    }

    /// The attributes of `ino` as `stat` would see them now: COS's (cached), with what an open
    /// file has not committed yet.
    pub(super) async fn current_xattrs(&self, ino: Ino) -> FsResult<Xattrs> {
        if ino == ROOT_INO {
            return Ok(self.root_attrs.lock().xattrs.clone().unwrap_or_default());
        }
        if let Some(pending) = self.view_of(ino).and_then(|v| v.pending.xattrs) {
            return Ok(pending);
        }
        if let Some(Stat::File(f)) = self.local_stat(ino) {
            return Ok(f.meta.and_then(|m| m.xattrs).unwrap_or_default());
        }
        let (kind, unlinked) = self.kind_and_removal(ino)?;
        if unlinked {
            return Ok(Xattrs::new());
        }
        let key = self.key_of(ino)?;
        let stat = match self.resolve(&key).await? {
            // A listing does not carry user metadata: HEAD for it, unless the mount trusts
            // listings (`--fast-listing`), as it does for modes and owners until the entry's
            // metadata TTL passes. Otherwise `ls -l`, which asks every entry for its SELinux
            // label and ACL, would send one HEAD per entry, one after the other.
            Some(Stat::File(f)) if f.meta.is_none() && !self.cfg.fast_listing => {
                self.file_stat(&key).await?
            }
            Some(Stat::Dir(d)) if !d.probed && !self.cfg.fast_listing => {
                Some(self.dir_stat(&key).await?)
            }
            other => other,
        };
        let meta = match stat {
            Some(Stat::File(f)) if f.kind() == kind => f.meta,
            Some(Stat::Dir(d)) => d.marker.map(|(m, _)| m),
            _ => return Err(FsError::NotFound),
        };
        Ok(meta.and_then(|m| m.xattrs).unwrap_or_default())
    }

    pub async fn getxattr(&self, ino: Ino, name: &str, size: u32) -> FsResult<XattrReply> {
        self.check_xattrs()?;
        let attrs = self.current_xattrs(ino).await?;
        let value = attrs.get(name).ok_or(FsError::NoAttr)?;
        sized(value.clone(), size)
    }

    pub async fn listxattr(&self, ino: Ino, size: u32) -> FsResult<XattrReply> {
        self.check_xattrs()?;
        let mut names = Vec::new();
        for name in self.current_xattrs(ino).await?.keys() {
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        sized(names, size)
    }

    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &str,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> FsResult<()> {
        self.check_xattrs()?;
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(FsError::Range);
        }
        self.change_xattrs(
            ino,
            XattrOp::Set {
                name: name.to_string(),
                value: value.to_vec(),
                create,
                replace,
            },
        )
        .await
    }

    pub async fn removexattr(&self, ino: Ino, name: &str) -> FsResult<()> {
        self.check_xattrs()?;
        self.change_xattrs(ino, XattrOp::Remove(name.to_string()))
            .await
    }

    async fn change_xattrs(&self, ino: Ino, op: XattrOp) -> FsResult<()> {
        self.check_writable()?;
        if ino == ROOT_INO {
            // The mount root has no object: in memory, like its other attributes.
            let mut root = self.root_attrs.lock();
            let mut user = BTreeMap::new();
            root.apply(&mut user);
            let change = op.change_from(&user, Kind::Dir)?;
            root.merge(&change);
            return Ok(());
        }
        let kind = self.kind_of(ino)?;
        self.update_meta(ino, kind, None, &|user| op.change_from(user, kind))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_what_s3fs_writes_and_reads() {
        let mut a = Xattrs::new();
        a.insert("user.k".into(), b"v".to_vec());
        a.insert("user.mime_type".into(), b"text/plain; x=1".to_vec());
        let h = encode(&a).unwrap();
        // {"user.k":"dg==","user.mime_type":"dGV4dC9wbGFpbjsgeD0x"}, URL-encoded as s3fs does.
        assert_eq!(
            h,
            "%7B%22user.k%22%3A%22dg%3D%3D%22%2C%22user.mime_type%22%3A%22dGV4dC9wbGFpbjsgeD0x%22%7D"
        );
        assert_eq!(decode(&h), a);
        assert_eq!(encode(&Xattrs::new()), None);
        // Lower-case escapes and unescaped JSON are read too; garbage gives nothing.
        assert_eq!(decode(r#"{"user.k":"dg=="}"#).get("user.k").unwrap(), b"v");
        assert!(decode("not json").is_empty());
    }

    #[test]
    fn flags_and_limits_give_their_errors() {
        let user = BTreeMap::new();
        let set = |name: &str, len: usize, create, replace| XattrOp::Set {
            name: name.into(),
            value: vec![b'x'; len],
            create,
            replace,
        };
        assert!(matches!(
            set("user.a", 1, false, true).change_from(&user, Kind::File),
            Err(FsError::NoAttr)
        ));
        let change = set("user.a", 1, true, false)
            .change_from(&user, Kind::File)
            .unwrap();
        let mut stored = BTreeMap::new();
        change.apply(&mut stored);
        assert!(matches!(
            set("user.a", 1, true, false).change_from(&stored, Kind::File),
            Err(FsError::Exists)
        ));
        assert!(matches!(
            XattrOp::Remove("user.b".into()).change_from(&stored, Kind::File),
            Err(FsError::NoAttr)
        ));
        assert!(matches!(
            set("user.big", 1600, false, false).change_from(&user, Kind::File),
            Err(FsError::TooBig)
        ));
        let mut full = BTreeMap::new();
        full.insert("other".to_string(), "y".repeat(3000));
        assert!(matches!(
            set("user.a", 900, false, false).change_from(&full, Kind::File),
            Err(FsError::NoSpace)
        ));
        let cleared = XattrOp::Remove("user.a".into())
            .change_from(&stored, Kind::File)
            .unwrap();
        cleared.apply(&mut stored);
        assert!(!stored.contains_key(META_XATTR), "the empty header goes");
    }
}
