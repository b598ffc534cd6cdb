//! The inode table: inode numbers for paths, kept while the kernel holds a lookup reference
//! or a file handle. An inode records its parent and name rather than its path, so renaming a
//! directory moves its whole subtree at once.

use std::collections::HashMap;

use super::attrs::{Ino, Kind, ROOT_INO};

#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: Ino,
    pub parent: Ino,
    pub name: String,
    pub kind: Kind,
    lookups: u64,
    /// Open directory handles, plus one while the file has an open state (open_file.rs).
    handles: u32,
    /// Removed from the namespace while still referenced.
    pub unlinked: bool,
    /// A symlink's target once read.
    pub symlink_target: Option<String>,
    /// ETag of the version whose pages the kernel may cache (`keep_cache` while unchanged).
    pub cached_etag: Option<String>,
}

impl Inode {
    fn new(ino: Ino, parent: Ino, name: &str, kind: Kind) -> Self {
        Inode {
            ino,
            parent,
            name: name.to_string(),
            kind,
            lookups: 1,
            handles: 0,
            unlinked: false,
            symlink_target: None,
            cached_etag: None,
        }
    }
}

pub struct InodeTable {
    inodes: HashMap<Ino, Inode>,
    children: HashMap<(Ino, String), Ino>,
    next: Ino,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    pub fn new() -> Self {
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, Inode::new(ROOT_INO, ROOT_INO, "", Kind::Dir));
        InodeTable {
            inodes,
            children: HashMap::new(),
            next: ROOT_INO + 1,
        }
    }

    pub fn get(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino)
    }

    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.children.get(&(parent, name.to_string())).copied()
    }

    /// Children of `parent` currently in the table.
    pub fn children_of(&self, parent: Ino) -> Vec<Ino> {
        self.children
            .iter()
            .filter(|((p, _), _)| *p == parent)
            .map(|(_, ino)| *ino)
            .collect()
    }

    /// The path relative to the mount root (`""` for the root), or `None` for an inode that was
    /// removed or whose ancestors were forgotten.
    pub fn path(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        let mut guard = 0;
        while cur != ROOT_INO {
            let node = self.inodes.get(&cur)?;
            if node.unlinked {
                return None;
            }
            parts.push(node.name.as_str());
            cur = node.parent;
            guard += 1;
            if guard > 4096 {
                return None;
            }
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// The inode for `parent/name` with one more lookup reference, created if needed. An
    /// existing inode of another kind is detached and replaced (the name now means something
    /// else).
    pub fn lookup(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        if let Some(ino) = self.child(parent, name) {
            let node = self.inodes.get_mut(&ino).expect("children point at inodes");
            if node.kind == kind {
                node.lookups += 1;
                return ino;
            }
            self.detach(parent, name);
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(ino, Inode::new(ino, parent, name, kind));
        self.children.insert((parent, name.to_string()), ino);
        ino
    }

    /// Removes `parent/name` from the namespace; the inode lives on while referenced.
    pub fn detach(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let ino = self.children.remove(&(parent, name.to_string()))?;
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.unlinked = true;
        }
        self.maybe_drop(ino);
        Some(ino)
    }

    /// Removes `ino` from the name it still has, if any; the inode lives on while referenced.
    pub fn detach_ino(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get(&ino).filter(|n| !n.unlinked) {
            let (parent, name) = (node.parent, node.name.clone());
            self.detach(parent, &name);
        }
    }

    /// Moves `ino` to `new_parent/new_name`, detaching whatever was there.
    pub fn rename(&mut self, ino: Ino, new_parent: Ino, new_name: &str) {
        if let Some(existing) = self.child(new_parent, new_name)
            && existing != ino
        {
            self.detach(new_parent, new_name);
        }
        let Some(node) = self.inodes.get(&ino) else {
            return;
        };
        let old = (node.parent, node.name.clone());
        if self.children.get(&old) == Some(&ino) {
            self.children.remove(&old);
        }
        let node = self.inodes.get_mut(&ino).expect("checked above");
        node.parent = new_parent;
        node.name = new_name.to_string();
        self.children
            .insert((new_parent, new_name.to_string()), ino);
    }

    pub fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    pub fn open_handle(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.handles += 1;
        }
    }

    pub fn close_handle(&mut self, ino: Ino) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.handles = node.handles.saturating_sub(1);
        }
        self.maybe_drop(ino);
    }

    fn maybe_drop(&mut self, ino: Ino) {
        let Some(node) = self.inodes.get(&ino) else {
            return;
        };
        if ino == ROOT_INO || node.lookups > 0 || node.handles > 0 {
            return;
        }
        let key = (node.parent, node.name.clone());
        if self.children.get(&key) == Some(&ino) {
            self.children.remove(&key);
        }
        self.inodes.remove(&ino);
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_of_ancestors() {
        let mut t = InodeTable::new();
        let d = t.lookup(ROOT_INO, "d", Kind::Dir);
        let f = t.lookup(d, "f", Kind::File);
        assert_eq!(t.path(f).unwrap(), "d/f");
        t.rename(d, ROOT_INO, "e");
        assert_eq!(t.path(f).unwrap(), "e/f");
        assert_eq!(t.child(ROOT_INO, "d"), None);
    }

    #[test]
    fn forget_and_handles_keep_inodes_alive() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT_INO, "f", Kind::File);
        assert_eq!(t.lookup(ROOT_INO, "f", Kind::File), f);
        t.open_handle(f);
        t.forget(f, 2);
        assert!(t.get(f).is_some(), "an open handle keeps it");
        t.close_handle(f);
        assert!(t.get(f).is_none());
        assert_eq!(t.child(ROOT_INO, "f"), None);
    }

    #[test]
    fn a_changed_kind_gets_a_new_inode() {
        let mut t = InodeTable::new();
        let f = t.lookup(ROOT_INO, "x", Kind::File);
        let d = t.lookup(ROOT_INO, "x", Kind::Dir);
        assert_ne!(f, d);
        assert!(t.path(f).is_none(), "the old one is detached");
        assert_eq!(t.path(d).unwrap(), "x");
    }
}
