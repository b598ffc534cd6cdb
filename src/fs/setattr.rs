//! Attribute changes: chmod, chown, utimens and truncate. A change of a file that is open goes
//! into its open state: it rides along with the commit of a program still writing the file,
//! else it is committed at once. A change of a file nobody has open is a copy of the object
//! onto itself with new metadata (no data moves), or, for a truncation, a commit of a
//! short-lived state. Every change moves the ctime, as POSIX says.

use std::time::SystemTime;

use super::attrs::{Attr, Ino, Kind, MetaAttrs, ROOT_INO, mode_bits};
use super::error::{FsError, FsResult};
use super::meta_cache::{DirStat, FileStat, Stat};
use super::{Filesystem, SetAttr};
use crate::cos::{Body, CopyObject, ObjectMetadata, PutObject};

/// `attrs`, and when they change the mode of an object with an access ACL, that ACL following
/// the new mode (acl.rs; the kernel leaves it to the file system).
fn with_acl_chmod(
    attrs: &MetaAttrs,
    user: &std::collections::BTreeMap<String, String>,
) -> MetaAttrs {
    let mut out = attrs.clone();
    if let Some(mode) = attrs.mode {
        let mut x = MetaAttrs::parse(user).xattrs.unwrap_or_default();
        if let Some(new) = x
            .get(super::acl::ACCESS)
            .and_then(|v| super::acl::chmod(v, mode))
        {
            x.insert(super::acl::ACCESS.to_string(), new);
            out.xattrs = Some(x);
        }
    }
    out
}

/// Computes the attributes to store from an object's current user metadata.
pub(super) type MetaChange<'a> =
    dyn Fn(&std::collections::BTreeMap<String, String>) -> FsResult<MetaAttrs> + Send + Sync + 'a;

impl Filesystem {
    pub async fn setattr(&self, ino: Ino, fh: Option<u64>, change: SetAttr) -> FsResult<Attr> {
        let now = SystemTime::now();
        let mut attrs = MetaAttrs {
            mode: change.mode,
            uid: change.uid,
            gid: change.gid,
            mtime: change.mtime.map(|t| t.resolve(now)),
            atime: change.atime.map(|t| t.resolve(now)),
            ..MetaAttrs::default()
        };
        let touches_meta = attrs != MetaAttrs::default();
        if change.size.is_some() || touches_meta {
            self.check_writable()?;
            attrs.ctime = Some(now);
        }
        if ino == ROOT_INO {
            if change.size.is_some() {
                return Err(FsError::IsDir);
            }
            self.root_attrs.lock().merge(&attrs);
            if attrs.mtime.is_some() {
                self.dir_times.lock().pop(&self.key_of_path(""));
            }
            return Ok(self.root_attr());
        }
        let (kind, unlinked) = self.kind_and_removal(ino)?;
        if let Some(mode) = attrs.mode {
            attrs.mode = Some(mode_bits(kind, (mode & 0o7777) as u16));
        }
        if let Some(size) = change.size {
            if kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            self.truncate(ino, fh, size, &attrs).await?;
        } else if touches_meta {
            self.change_attrs(ino, kind, fh, &attrs).await?;
        }
        if unlinked {
            // Removed while open: the open file is all there is.
            return Ok(self.detached_attr(ino, kind));
        }
        self.getattr(ino).await
    }

    /// Whether a change of `ino` waits for a program's commit: made through a descriptor
    /// (ftruncate, fchmod) or while a program still writes the file.
    fn rides_along(&self, ino: Ino, fh: Option<u64>) -> bool {
        if let Some(h) = fh.and_then(|fh| self.file_handle(fh).ok())
            && h.ino() == ino
            && h.writable
        {
            h.set_flushed(false);
            return true;
        }
        self.written_by_a_program(ino)
    }

    /// Applies attribute changes: through the open state (they ride with a program's commit,
    /// or are committed now) or with a Copy of the object onto itself (no data moves).
    async fn change_attrs(
        &self,
        ino: Ino,
        kind: Kind,
        fh: Option<u64>,
        attrs: &MetaAttrs,
    ) -> FsResult<()> {
        self.update_meta(ino, kind, fh, &|user| Ok(with_acl_chmod(attrs, user)))
            .await
    }

    /// Changes the metadata of `ino`: `change` computes the attributes to store from the
    /// freshest user metadata (the open file's state, else a HEAD), so that changes computed
    /// from what is stored (an extended attribute among the others) build on the latest.
    pub(super) async fn update_meta(
        &self,
        ino: Ino,
        kind: Kind,
        fh: Option<u64>,
        change: &MetaChange<'_>,
    ) -> FsResult<()> {
        let key = self.key_of(ino).unwrap_or_default();
        if kind == Kind::Dir {
            return self.change_dir_attrs(&key, change).await;
        }
        let open = self.files.lock().get(&ino).cloned();
        if let Some(file) = open {
            let rides = self.rides_along(ino, fh);
            let mut st = file.state.lock().await;
            if let Some(w) = st.writer.as_mut() {
                let attrs = change(&w.metadata_now().user)?;
                w.set_attrs(&attrs);
                file.sync_view(&st);
                if rides || self.key_of(ino).is_err() {
                    return Ok(());
                }
                return self.commit_state(&file, &mut st, false).await;
            }
            // Only readers: the object's metadata changes under them, its bytes do not.
            let out = self.copy_with_attrs(&key, change).await?;
            if let Some(mut v) = st.version.clone() {
                v.etag = out;
                st.committed(v);
            }
            return Ok(());
        }
        self.copy_with_attrs(&key, change).await.map(|_| ())
    }

    /// Replaces the metadata of `key` by a copy of the object onto itself; returns the new ETag.
    async fn copy_with_attrs(&self, key: &str, change: &MetaChange<'_>) -> FsResult<String> {
        let info = self.head_fresh(key).await?;
        let mut meta = info.metadata();
        let attrs = change(&meta.user)?;
        let mut merged = MetaAttrs::parse(&meta.user);
        merged.merge(&attrs);
        merged.apply(&mut meta.user);
        let out = self
            .client
            .copy_object(
                CopyObject::new(key.to_string(), key.to_string())
                    .replace_metadata(meta.clone())
                    .source_if_match(info.etag.clone()),
            )
            .await
            .map_err(FsError::from_read)?;
        self.cache.insert(
            key,
            Stat::File(FileStat {
                size: info.size,
                etag: out.etag.clone(),
                last_modified: out.last_modified.unwrap_or_else(SystemTime::now),
                meta: Some(merged),
            }),
        );
        Ok(out.etag)
    }

    /// A directory's marker carries its attributes; an implicit directory gets a marker.
    async fn change_dir_attrs(&self, key: &str, change: &MetaChange<'_>) -> FsResult<()> {
        let marker_key = self.dir_prefix(key);
        let (mut meta, etag) = match self.client.head_object(&marker_key).await {
            Ok(info) => (info.metadata(), Some(info.etag)),
            Err(e) if e.is_not_found() => (ObjectMetadata::default(), None),
            Err(e) => return Err(FsError::from_read(e)),
        };
        let attrs = change(&meta.user)?;
        let mut merged = MetaAttrs::parse(&meta.user);
        merged.merge(&attrs);
        merged.apply(&mut meta.user);
        match etag {
            Some(etag) => {
                self.client
                    .copy_object(
                        CopyObject::new(marker_key.clone(), marker_key.clone())
                            .replace_metadata(meta)
                            .source_if_match(etag),
                    )
                    .await
                    .map_err(FsError::from_read)?;
            }
            None => {
                self.client
                    .put_object(PutObject::new(marker_key, Body::Empty).metadata(meta))
                    .await
                    .map_err(FsError::Cos)?;
            }
        }
        self.cache.insert(
            key,
            Stat::Dir(DirStat::probed(Some((merged, SystemTime::now())))),
        );
        if attrs.mtime.is_some() {
            // A time set explicitly (tar restoring a directory) wins over this mount's record
            // of its last change.
            self.dir_times.lock().pop(key);
        }
        Ok(())
    }

    /// Sets the size through the file's open state (a state of its own for the moment when
    /// nobody has it open): it rides along with a program's commit, or is committed now.
    async fn truncate(
        &self,
        ino: Ino,
        fh: Option<u64>,
        size: u64,
        attrs: &MetaAttrs,
    ) -> FsResult<()> {
        let key = self.key_of(ino).ok();
        let rides = self.rides_along(ino, fh);
        self.with_state(ino, async |file, st| {
            st.check_changeable()?;
            if st.writer.is_none() {
                let key = key.as_deref().ok_or(FsError::Stale)?;
                self.ensure_writer(file, st, key, false).await?;
            }
            let w = st.writer.as_mut().expect("made above");
            w.truncate(size).await?;
            w.set_attrs(attrs);
            file.sync_view(st);
            if rides {
                return Ok(());
            }
            self.commit_state(file, st, false).await
        })
        .await
    }

    /// fallocate(2): mode 0 (allocate, extending the file) grows the file as a truncation
    /// would; space needs no reserving in COS. Punching holes, collapsing, zeroing ranges or
    /// keeping the size are refused (EOPNOTSUPP).
    pub async fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        if mode != 0 {
            return Err(FsError::NotSupported("fallocate modes other than 0"));
        }
        let h = self.file_handle(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let end = offset.checked_add(len).ok_or(FsError::TooLarge)?;
        h.set_flushed(false);
        let mut st = h.file.state.lock().await;
        let w = st.writer.as_mut().ok_or(FsError::BadHandle)?;
        if end > w.size() {
            // Rides along with the commit of the descriptor's program, as ftruncate does.
            w.truncate(end).await?;
        }
        h.file.sync_view(&st);
        Ok(())
    }
}
