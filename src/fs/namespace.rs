//! Creating, removing and renaming names: mkdir, mknod (FIFOs, sockets, devices, empty
//! files), symlink, unlink, rmdir and rename. Each updates the inode table, the metadata cache
//! and the parent directory's times; open files follow (a removed one keeps its bytes for its
//! descriptors, a renamed one commits to its new name).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::attrs::{Attr, Ino, Kind, MetaAttrs, mode_bits};
use super::dir::DirHandle;
use super::error::{FsError, FsResult};
use super::meta_cache::{DirStat, FileStat, Stat};
use super::open_file::{FileState, OpenFile};
use super::write::{Base, WriteHandle, server_side_copy};
use super::xattr::Xattrs;
use super::{Caller, Filesystem, acl};
use crate::cos::client::list_all;
use crate::cos::{Body, ListObjects, ObjectMetadata, PutObject};

/// Keys renamed in parallel when a directory moves.
const RENAME_CONCURRENCY: usize = 16;

impl Filesystem {
    pub(super) fn new_attrs(kind: Kind, perm: u32, uid: u32, gid: u32) -> MetaAttrs {
        let now = SystemTime::now();
        MetaAttrs {
            mode: Some(mode_bits(kind, (perm & 0o7777) as u16)),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(now),
            ctime: Some(now),
            atime: Some(now),
            rdev: None,
            xattrs: None,
        }
    }

    /// The key of a name a create-type call is to make: the mount must be writable and the
    /// name free (EEXIST otherwise).
    pub(super) async fn free_key(&self, parent: Ino, name: &str) -> FsResult<String> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        self.ensure_absent(parent, name, &key).await?;
        Ok(key)
    }

    /// The attributes of a new entry of `parent` asked for with `mode` by `caller`: the mode
    /// the umask or the directory's default ACL leaves, and the ACLs it inherits (acl.rs).
    pub(super) async fn entry_attrs(
        &self,
        parent: Ino,
        kind: Kind,
        mode: u32,
        caller: Caller,
    ) -> FsResult<MetaAttrs> {
        let default = if self.cfg.xattrs {
            self.current_xattrs(parent).await?.remove(acl::DEFAULT)
        } else {
            None
        };
        let inherited = acl::inherit(
            default.as_deref(),
            mode & 0o7777,
            caller.umask,
            kind == Kind::Dir,
        );
        let mut attrs = Self::new_attrs(kind, inherited.mode, caller.uid, caller.gid);
        if inherited.access.is_some() || inherited.default.is_some() {
            let mut acls = Xattrs::new();
            if let Some(a) = inherited.access {
                acls.insert(acl::ACCESS.to_string(), a);
            }
            if let Some(d) = inherited.default {
                acls.insert(acl::DEFAULT.to_string(), d);
            }
            attrs.xattrs = Some(acls);
        }
        Ok(attrs)
    }

    /// EEXIST unless `parent/name` is free (locally and in COS).
    pub(super) async fn ensure_absent(&self, parent: Ino, name: &str, key: &str) -> FsResult<()> {
        if let Some(ino) = self.inodes.lock().child(parent, name)
            && self.local_stat(ino).is_some()
        {
            return Err(FsError::Exists);
        }
        if self.absent(key).await? {
            Ok(())
        } else {
            Err(FsError::Exists)
        }
    }

    /// Stores a new object at `key` at once (a directory marker, a symlink, a special file)
    /// and makes it known: cache, listing, parent's times, inode.
    async fn put_new(
        &self,
        parent: Ino,
        name: &str,
        key: &str,
        body: Bytes,
        attrs: MetaAttrs,
        kind: Kind,
    ) -> FsResult<Attr> {
        let mut meta = ObjectMetadata::default();
        attrs.apply(&mut meta.user);
        if kind == Kind::File {
            meta.content_type = super::write::content_type_of(key);
        }
        let stored_key = if kind == Kind::Dir {
            self.dir_prefix(key)
        } else {
            key.to_string()
        };
        let size = body.len() as u64;
        let body = if body.is_empty() {
            Body::Empty
        } else {
            Body::Bytes(body)
        };
        let out = self
            .client
            .put_object(PutObject::new(stored_key, body).metadata(meta))
            .await
            .map_err(FsError::Cos)?;
        let now = SystemTime::now();
        let stat = if kind == Kind::Dir {
            Stat::Dir(DirStat::probed(Some((attrs, now))))
        } else {
            Stat::File(FileStat {
                size,
                etag: out.etag,
                last_modified: out.last_modified.unwrap_or(now),
                meta: Some(attrs),
            })
        };
        self.learn(key, Some(stat.clone()));
        self.touch_parent(key);
        let ino = self.inodes.lock().lookup(parent, name, kind);
        Ok(self.attr_of(ino, &stat))
    }

    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let key = self.free_key(parent, name).await?;
        let attrs = self.entry_attrs(parent, Kind::Dir, mode, caller).await?;
        let attr = self
            .put_new(parent, name, &key, Bytes::new(), attrs, Kind::Dir)
            .await?;
        if !self.cfg.listing_ttl.is_zero() {
            // A directory made here is empty: with listings reused, that is known without
            // asking (for the listing TTL).
            let prefix = self.dir_prefix(&key);
            let mut empty = DirHandle::new(0, prefix.clone());
            empty.done = true;
            self.listings.lock().store(&prefix, &empty, Instant::now());
        }
        Ok(attr)
    }

    /// mknod(2): a FIFO, socket or device is an empty object whose mode carries its type and,
    /// for a device, whose `x-cos-meta-rdev` carries its number (as cosfs and s3fs store them);
    /// a regular file is an empty object.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let kind = match Kind::from_mode(mode) {
            Some(Kind::Dir | Kind::Symlink) | None => {
                return Err(FsError::Invalid("mknod of a directory or symlink"));
            }
            Some(k) => k,
        };
        let key = self.free_key(parent, name).await?;
        let mut attrs = self.entry_attrs(parent, kind, mode, caller).await?;
        if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
            attrs.rdev = Some(rdev);
        }
        self.put_new(parent, name, &key, Bytes::new(), attrs, kind)
            .await
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> FsResult<Attr> {
        let key = self.free_key(parent, name).await?;
        let attrs = Self::new_attrs(Kind::Symlink, 0o777, caller.uid, caller.gid);
        let attr = self
            .put_new(
                parent,
                name,
                &key,
                Bytes::from(target.to_string()),
                attrs,
                Kind::Symlink,
            )
            .await?;
        if let Some(node) = self.inodes.lock().get_mut(attr.ino) {
            node.symlink_target = Some(target.to_string());
        }
        Ok(attr)
    }

    /// The open file of `ino`, if any: a path operation that removes or replaces its name
    /// holds its state (waiting for a commit in progress) until the name is gone, so no commit
    /// of it lands after; once the name is detached, its commits go nowhere.
    fn open_file(&self, ino: Option<Ino>) -> Option<Arc<OpenFile>> {
        ino.and_then(|i| self.files.lock().get(&i).cloned())
    }

    /// Before the object of an open file goes (unlink, or a rename over it): its content
    /// moves into its open state, so descriptors still in use keep reading and writing it
    /// until the last one closes. Nothing is done when no descriptor is left (the last one's
    /// release is running).
    async fn keep_open_content(&self, file: &OpenFile, st: &mut FileState) {
        if self.handles_of(file.ino).is_empty() {
            return;
        }
        if st.writer.is_none() {
            let Some(version) = st.version.clone() else {
                return;
            };
            st.writer = Some(WriteHandle::new(
                self.client.clone(),
                self.write_config(),
                self.upload_slots.clone(),
                version.key.clone(),
                Some(Base {
                    version,
                    metadata: ObjectMetadata::default(),
                }),
                false,
                MetaAttrs::default(),
            ));
        }
        let w = st.writer.as_mut().expect("set above");
        if let Err(e) = w.materialize().await {
            log::warn!("a removed file's open descriptors cannot keep its bytes: {e}");
        }
        file.sync_view(st);
    }

    pub async fn unlink(&self, parent: Ino, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        let child = self.inodes.lock().child(parent, name);
        if let Some(ino) = child
            && self.local_stat(ino).is_some()
        {
            // Never stored: forgetting it is enough; its descriptors will not commit it.
            self.inodes.lock().detach(parent, name);
            self.touch_parent(&key);
            return Ok(());
        }
        let file = self.open_file(child);
        let mut held = match &file {
            Some(f) => Some(f.state.lock().await),
            None => None,
        };
        match self.resolve(&key).await? {
            None => return Err(FsError::NotFound),
            Some(Stat::Dir(_)) => return Err(FsError::IsDir),
            Some(Stat::File(_)) => {}
        }
        if let (Some(f), Some(st)) = (&file, held.as_deref_mut()) {
            self.keep_open_content(f, st).await;
        }
        self.client
            .delete_object(&key)
            .await
            .map_err(FsError::Cos)?;
        if let Some(c) = &self.cfg.data_cache {
            c.forget_key(&key);
        }
        self.learn(&key, None);
        self.inodes.lock().detach(parent, name);
        self.touch_parent(&key);
        drop(held);
        Ok(())
    }

    /// Whether directory `key` has anything in it besides its own marker.
    pub(super) async fn dir_has_children(&self, key: &str, ino: Option<Ino>) -> FsResult<bool> {
        if let Some(ino) = ino {
            let kids = self.inodes.lock().children_of(ino);
            if kids.into_iter().any(|k| self.local_stat(k).is_some()) {
                return Ok(true);
            }
        }
        let prefix = self.dir_prefix(key);
        // With listings reused, a fresh complete listing (which the mount's own creates and
        // removals keep up to date) answers: `rm -r` then costs no LIST per directory.
        if let Some(Some(has)) =
            self.reused_listing(&prefix, |d| d.done.then_some(!d.entries.is_empty()))
        {
            return Ok(has);
        }
        let page = self
            .client
            .list_objects(ListObjects::new(prefix.clone()).max_keys(2))
            .await
            .map_err(FsError::Cos)?;
        Ok(!page.common_prefixes.is_empty() || page.objects.iter().any(|o| o.key != prefix))
    }

    pub async fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let key = self.child_key(parent, name)?;
        match self.resolve(&key).await? {
            None => return Err(FsError::NotFound),
            Some(Stat::File(_)) => return Err(FsError::NotDir),
            Some(Stat::Dir(_)) => {}
        }
        let ino = self.inodes.lock().child(parent, name);
        if self.dir_has_children(&key, ino).await? {
            return Err(FsError::NotEmpty);
        }
        self.client
            .delete_object(&self.dir_prefix(&key))
            .await
            .map_err(FsError::Cos)?;
        // It was empty: its parent's listing only loses it (`learn`).
        self.unlearn_below(&key);
        self.learn(&key, None);
        self.inodes.lock().detach(parent, name);
        self.touch_parent(&key);
        Ok(())
    }

    /// Server-side copy of one object, multipart above 5 GiB (Upload Part - Copy), with its
    /// metadata kept (and its storage class `class`), or replaced by `metadata`.
    async fn copy_one(
        &self,
        src: &str,
        dst: &str,
        size: u64,
        metadata: Option<ObjectMetadata>,
        class: Option<String>,
    ) -> FsResult<crate::cos::client::PutOutput> {
        server_side_copy(
            &*self.client,
            src,
            dst,
            size,
            metadata,
            class,
            self.cfg.max_concurrency,
        )
        .await
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> FsResult<()> {
        self.check_writable()?;
        let src = self.child_key(parent, name)?;
        let dst = self.child_key(new_parent, new_name)?;
        if src == dst {
            return Ok(());
        }
        let src_ino = self.inodes.lock().child(parent, name);
        let src_local = src_ino.is_some_and(|i| self.local_stat(i).is_some());
        let src_stat = if src_local {
            None
        } else {
            Some(self.resolve(&src).await?.ok_or(FsError::NotFound)?)
        };
        let src_kind = src_stat.as_ref().map(Stat::kind).unwrap_or(Kind::File);
        let dst_ino = self.inodes.lock().child(new_parent, new_name);
        let dst_local = dst_ino.and_then(|i| self.local_stat(i));
        let dst_stat = match dst_local {
            Some(s) => Some(s),
            None => self.resolve(&dst).await?,
        };
        if let Some(d) = &dst_stat {
            if noreplace {
                return Err(FsError::Exists);
            }
            match (src_kind == Kind::Dir, d.kind() == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) => {
                    if self.dir_has_children(&dst, dst_ino).await? {
                        return Err(FsError::NotEmpty);
                    }
                }
                (false, false) => {}
            }
        }
        if src_kind == Kind::Dir && dst.starts_with(&format!("{src}/")) {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        // What the new name held is replaced: its open descriptors keep its bytes, and no
        // commit of it lands over the renamed file.
        let dst_file = if dst_stat.is_some() && src_kind != Kind::Dir {
            self.open_file(dst_ino)
        } else {
            None
        };
        let mut dst_held = match &dst_file {
            Some(f) => Some(f.state.lock().await),
            None => None,
        };
        if let (Some(f), Some(st)) = (&dst_file, dst_held.as_deref_mut()) {
            self.keep_open_content(f, st).await;
        }
        let replaces_stored_file = matches!(dst_stat, Some(Stat::File(_)))
            && dst_ino.is_none_or(|i| self.local_stat(i).is_none());
        if src_local {
            // Not stored yet: only the name changes; the first commit uses the new one. What
            // the new name held is replaced now, as rename(2) says, not at that commit.
            let ino = src_ino.expect("local implies an inode");
            if replaces_stored_file {
                self.client
                    .delete_object(&dst)
                    .await
                    .map_err(FsError::Cos)?;
            }
            self.inodes.lock().rename(ino, new_parent, new_name);
            drop(dst_held);
            self.unlearn_tree(&dst);
            self.touch_parent(&src);
            self.touch_parent(&dst);
            return Ok(());
        }
        if let Some(ino) = src_ino {
            self.commit_files_under(ino).await?;
        }
        match src_stat.expect("not local") {
            Stat::File(_) => {
                let info = self.head_fresh(&src).await?;
                // The renamed file's ctime moves, as on Linux file systems.
                let meta = ctime_now(info.metadata());
                let copied = self
                    .copy_one(&src, &dst, info.size, Some(meta), None)
                    .await?;
                if let Some(c) = &self.cfg.data_cache {
                    c.rename(&src, &info.etag, &dst, &copied.etag);
                }
                self.client
                    .delete_object(&src)
                    .await
                    .map_err(FsError::Cos)?;
                self.learn(&src, None);
                self.unlearn_tree(&dst);
            }
            Stat::Dir(_) => {
                if dst_stat.is_some() {
                    self.client
                        .delete_object(&self.dir_prefix(&dst))
                        .await
                        .map_err(FsError::Cos)?;
                }
                self.rename_tree(&src, &dst).await?;
                self.unlearn_tree(&src);
                self.unlearn_tree(&dst);
                self.learn(&src, None);
                self.dir_times.lock().pop(&src);
            }
        }
        self.touch_parent(&src);
        self.touch_parent(&dst);
        let moved = self.inodes.lock().child(parent, name);
        if let Some(ino) = moved {
            self.inodes.lock().rename(ino, new_parent, new_name);
            drop(dst_held);
            self.follow_rename(ino).await;
        } else {
            self.inodes.lock().detach(new_parent, new_name);
        }
        Ok(())
    }

    /// Points the open files of `moved` (a renamed file, or anything under a renamed
    /// directory) at their new keys: their descriptors read, and their writers commit and
    /// fetch, there. The copy's ETag may differ from the original's (multipart copies), so it
    /// is asked for.
    async fn follow_rename(&self, moved: Ino) {
        let files: Vec<_> = self.files.lock().values().cloned().collect();
        for file in files {
            if !self.is_under(file.ino, moved) {
                continue;
            }
            let Ok(key) = self.key_of(file.ino) else {
                continue;
            };
            let etag = self.client.head_object(&key).await.ok().map(|i| i.etag);
            let mut st = file.state.lock().await;
            if let Some(mut v) = st.version.clone() {
                v.key = key.clone();
                if let Some(e) = &etag {
                    v.etag = e.clone();
                }
                // The same bytes under another name: every descriptor reads them there.
                st.committed(v);
            }
            if let Some(w) = st.writer.as_mut() {
                w.rebase(key, etag);
            }
        }
    }

    /// Copies every key under `src/` to `dst/` (in parallel), then deletes the old keys: an
    /// interruption leaves every object reachable under the old name, the new one, or both.
    async fn rename_tree(&self, src: &str, dst: &str) -> FsResult<()> {
        let src_prefix = self.dir_prefix(src);
        let dst_prefix = self.dir_prefix(dst);
        let pages: Vec<_> = list_all(self.client.clone(), ListObjects::new(src_prefix.clone()))
            .try_collect()
            .await
            .map_err(FsError::Cos)?;
        let objects = pages
            .into_iter()
            .flat_map(|p| p.objects)
            .collect::<Vec<_>>();
        futures::stream::iter(objects.iter().cloned())
            .map(|o| {
                let target = format!("{dst_prefix}{}", &o.key[src_prefix.len()..]);
                let marker = o.key == src_prefix;
                async move {
                    // The directory's own marker carries its attributes: its ctime moves.
                    let metadata = if marker {
                        Some(self.with_ctime_now(&o.key).await?)
                    } else {
                        None
                    };
                    let copied = self
                        .copy_one(&o.key, &target, o.size, metadata, o.storage_class)
                        .await?;
                    // The same bytes under a new key: cached blocks move with them.
                    if let Some(c) = &self.cfg.data_cache {
                        c.rename(&o.key, &o.etag, &target, &copied.etag);
                    }
                    Ok::<_, FsError>(())
                }
            })
            .buffer_unordered(RENAME_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        let failed = self
            .client
            .delete_objects(&keys)
            .await
            .map_err(FsError::Cos)?;
        if let Some((key, why)) = failed.first() {
            log::error!("rename: could not delete {key} after copying it: {why}");
            return Err(FsError::Local(format!("could not delete {key}")));
        }
        Ok(())
    }

    /// The metadata of object `key` (HEAD) with its ctime set to now.
    async fn with_ctime_now(&self, key: &str) -> FsResult<ObjectMetadata> {
        Ok(ctime_now(self.head_fresh(key).await?.metadata()))
    }

    pub fn link(&self) -> FsResult<Attr> {
        Err(FsError::NotPermitted("hard links are not supported on COS"))
    }
}

/// `meta` with its ctime set to now (a rename changes the renamed entry's ctime).
fn ctime_now(mut meta: ObjectMetadata) -> ObjectMetadata {
    let mut attrs = MetaAttrs::parse(&meta.user);
    attrs.ctime = Some(SystemTime::now());
    attrs.apply(&mut meta.user);
    meta
}
