//! POSIX ACLs: stored as extended attributes (xattr.rs) and enforced by the kernel (cosmount
//! asks it to, `FUSE_POSIX_ACL`). What the kernel leaves to the file system is done here:
//! keeping an access ACL and the mode in step (setting one sets the other, as the kernel's
//! `posix_acl_update_mode` and `posix_acl_chmod` do for ext4), and what a new entry inherits:
//! with a default ACL on its directory, the new entry's ACL is that default masked by the mode
//! asked for (and no umask applies), as `posix_acl_create` does; a new directory inherits the
//! default ACL itself too. Without one, the umask applies.
//!
//! The values are the kernel's xattr format: a little-endian `u32` version (2), then entries of
//! `u16` tag, `u16` permissions, `u32` id.

/// `system.posix_acl_access`: the ACL permission checks use.
pub const ACCESS: &str = "system.posix_acl_access";
/// `system.posix_acl_default`: what entries made in a directory inherit.
pub const DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

fn parse(value: &[u8]) -> Option<Vec<Entry>> {
    let (head, rest) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != VERSION || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect(),
    )
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// What a new entry gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// Its permission bits (`0o7777`).
    pub mode: u32,
    /// Its access ACL, when it says more than the mode.
    pub access: Option<Vec<u8>>,
    /// Its default ACL (a directory's, from its parent's).
    pub default: Option<Vec<u8>>,
}

/// The mode and ACLs of a new entry asked for with `mode` (and the caller's `umask`) in a
/// directory whose default ACL is `parent_default`. A malformed default ACL is ignored (with
/// a warning): the umask applies, as if there were none.
pub fn inherit(parent_default: Option<&[u8]>, mode: u32, umask: u32, is_dir: bool) -> Inherited {
    let special = mode & 0o7000;
    let Some(mut acl) = parent_default.and_then(|v| {
        let parsed = parse(v);
        if parsed.is_none() {
            log::warn!("ignoring a malformed default ACL");
        }
        parsed
    }) else {
        return Inherited {
            mode: mode & !umask & 0o7777,
            access: None,
            default: None,
        };
    };
    let default = is_dir.then(|| encode(&acl));
    let mut m = mode & 0o777;
    let mut not_equiv = false;
    let (mut group_obj, mut mask) = (None, None);
    for (i, e) in acl.iter_mut().enumerate() {
        match e.tag {
            USER_OBJ => {
                e.perm &= ((m >> 6) & 7) as u16;
                m &= ((e.perm as u32) << 6) | !0o700;
            }
            USER | GROUP => not_equiv = true,
            GROUP_OBJ => group_obj = Some(i),
            OTHER => {
                e.perm &= (m & 7) as u16;
                m &= e.perm as u32 | !0o007;
            }
            MASK => {
                mask = Some(i);
                not_equiv = true;
            }
            _ => {}
        }
    }
    if let Some(i) = mask.or(group_obj) {
        acl[i].perm &= ((m >> 3) & 7) as u16;
        m &= ((acl[i].perm as u32) << 3) | !0o070;
    }
    Inherited {
        mode: special | (m & 0o777),
        access: not_equiv.then(|| encode(&acl)),
        default,
    }
}

/// What setting an access ACL does to the mode (the kernel leaves it to the file system with
/// `FUSE_POSIX_ACL`, as ext4 does it in `posix_acl_update_mode`): the permission bits it implies
/// (owner from the owner entry, group from the mask, or the owning group without one, others
/// from the other entry), and whether the ACL says no more than them (it need not be stored).
/// `None` for a malformed ACL.
pub fn mode_of_access(value: &[u8]) -> Option<(u32, bool)> {
    let acl = parse(value)?;
    let perm = |tag| acl.iter().find(|e| e.tag == tag).map(|e| e.perm as u32 & 7);
    let group = perm(MASK).or(perm(GROUP_OBJ))?;
    let mode = (perm(USER_OBJ)? << 6) | (group << 3) | perm(OTHER)?;
    let equivalent = acl
        .iter()
        .all(|e| matches!(e.tag, USER_OBJ | GROUP_OBJ | OTHER));
    Some((mode, equivalent))
}

/// The access ACL after a chmod to `mode` (as the kernel's `posix_acl_chmod`): the owner,
/// mask (or owning group) and other entries take the new bits; named entries stay.
pub fn chmod(value: &[u8], mode: u32) -> Option<Vec<u8>> {
    let mut acl = parse(value)?;
    let has_mask = acl.iter().any(|e| e.tag == MASK);
    for e in &mut acl {
        match e.tag {
            USER_OBJ => e.perm = ((mode >> 6) & 7) as u16,
            MASK => e.perm = ((mode >> 3) & 7) as u16,
            GROUP_OBJ if !has_mask => e.perm = ((mode >> 3) & 7) as u16,
            OTHER => e.perm = (mode & 7) as u16,
            _ => {}
        }
    }
    Some(encode(&acl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        encode(
            &entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn without_a_default_acl_the_umask_applies() {
        let i = inherit(None, 0o666, 0o022, false);
        assert_eq!(
            i,
            Inherited {
                mode: 0o644,
                access: None,
                default: None
            }
        );
    }

    #[test]
    fn a_default_acl_is_inherited_masked_by_the_mode_and_the_umask_is_ignored() {
        // setfacl -d -m u::rwx,u:1000:rwx,g::r-x,m::rwx,o::--- dir
        let d = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 1000),
            (GROUP_OBJ, 5, 0),
            (MASK, 7, 0),
            (OTHER, 0, 0),
        ]);
        let f = inherit(Some(&d), 0o666, 0o077, false);
        assert_eq!(f.mode, 0o660, "group bits are the mask's");
        let access = parse(f.access.as_ref().unwrap()).unwrap();
        assert_eq!(access[0].perm, 6, "user_obj masked by the mode");
        assert_eq!(
            access[1].perm, 7,
            "named entries are kept, the mask limits them"
        );
        assert_eq!(access[3].perm, 6, "mask masked by the mode");
        assert_eq!(access[4].perm, 0);
        assert_eq!(f.default, None);
        let dir = inherit(Some(&d), 0o777, 0o077, true);
        assert_eq!(dir.mode, 0o770);
        assert_eq!(
            dir.default.as_deref(),
            Some(&d[..]),
            "a directory inherits the default too"
        );
        // A default equivalent to a mode gives no access ACL, only the mode.
        let plain = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 5, 0)]);
        let f = inherit(Some(&plain), 0o666, 0o077, false);
        assert_eq!((f.mode, f.access), (0o644, None));
        // Garbage is ignored: the umask applies.
        assert_eq!(inherit(Some(b"junk"), 0o666, 0o022, false).mode, 0o644);
    }

    #[test]
    fn access_acls_and_modes_follow_each_other() {
        let plain = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 4, 0)]);
        assert_eq!(mode_of_access(&plain), Some((0o644, true)));
        let named = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 0, 65534),
            (GROUP_OBJ, 4, 0),
            (MASK, 6, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(
            mode_of_access(&named),
            Some((0o660, false)),
            "group bits are the mask's"
        );
        let after = parse(&chmod(&named, 0o750).unwrap()).unwrap();
        let perms: Vec<u16> = after.iter().map(|e| e.perm).collect();
        assert_eq!(
            perms,
            [7, 0, 4, 5, 0],
            "owner, named kept, group kept, mask, other"
        );
        assert_eq!(mode_of_access(b"junk"), None);
    }
}
