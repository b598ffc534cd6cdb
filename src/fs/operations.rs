//! `Operations`: what the FUSE adapter asks of a mounted file system, by inode number and file
//! handle. Two kinds of mount answer it: a `Filesystem` (one bucket, or a prefix of one) and a
//! `Service` (every bucket of the account, service.rs). fuse.rs is generic over it and knows
//! nothing else of either; each method means what the `Filesystem` method of that name means.
//!
//! The trait and its implementation for `Filesystem` (each method the inherent one of the
//! same name) are written from one list, so the two cannot drift apart.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::attrs::{Attr, Ino};
use super::dir::DirEntry;
use super::error::FsResult;
use super::handles::Written;
use super::xattr::XattrReply;
use super::{Caller, Filesystem, FsConfig, Listed, OpenMode, Opened, SetAttr, StatFs};

macro_rules! operations {
    (
        answered at once { $(
            $(#[$sdoc:meta])*
            fn $sname:ident(&self $(, $sarg:ident: $sty:ty)*) $(-> $sret:ty)?;
        )* }
        awaited { $(
            $(#[$adoc:meta])*
            fn $aname:ident(&self $(, $aarg:ident: $aty:ty)*) -> $aret:ty;
        )* }
    ) => {
        pub trait Operations: Send + Sync + 'static {
            $( $(#[$sdoc])* fn $sname(&self $(, $sarg: $sty)*) $(-> $sret)?; )*
            $(
                $(#[$adoc])*
                fn $aname(&self $(, $aarg: $aty)*) -> impl Future<Output = $aret> + Send;
            )*
        }

        impl Operations for Filesystem {
            $(
                fn $sname(&self $(, $sarg: $sty)*) $(-> $sret)? {
                    Filesystem::$sname(self $(, $sarg)*)
                }
            )*
            $(
                fn $aname(&self $(, $aarg: $aty)*) -> impl Future<Output = $aret> + Send {
                    Filesystem::$aname(self $(, $aarg)*)
                }
            )*
        }
    };
}

operations! {
    answered at once {
        fn config(&self) -> &FsConfig;
        /// How long the kernel may cache entries and attributes.
        fn ttl(&self) -> Duration;
        fn statfs(&self) -> StatFs;
        /// Registers an entry returned by readdirplus (one lookup reference).
        fn remember(&self, parent: Ino, entry: &DirEntry) -> Attr;
        fn forget(&self, ino: Ino, n: u64);
        fn link(&self) -> FsResult<Attr>;
        fn releasedir(&self, fh: u64);
        /// Whether to ask the kernel for FUSE passthrough (the data cache is on).
        fn wants_passthrough(&self) -> bool;
        /// Passthrough is on (the kernel took it) or off (registering a file failed).
        fn set_passthrough(&self, on: bool);
        /// `write`, when it can be done at once from the caller's buffer; `None`: call `write`.
        fn write_now(&self, fh: u64, offset: u64, data: &[u8], drop_setid: bool) -> Option<Written>;
    }
    awaited {
        fn lookup(&self, parent: Ino, name: &str) -> FsResult<Attr>;
        fn getattr(&self, ino: Ino) -> FsResult<Attr>;
        fn setattr(&self, ino: Ino, fh: Option<u64>, change: SetAttr) -> FsResult<Attr>;
        fn readlink(&self, ino: Ino) -> FsResult<String>;
        fn mkdir(&self, parent: Ino, name: &str, mode: u32, caller: Caller) -> FsResult<Attr>;
        fn mknod(
            &self,
            parent: Ino,
            name: &str,
            mode: u32,
            rdev: u32,
            caller: Caller
        ) -> FsResult<Attr>;
        fn symlink(&self, parent: Ino, name: &str, target: &str, caller: Caller) -> FsResult<Attr>;
        fn unlink(&self, parent: Ino, name: &str) -> FsResult<()>;
        fn rmdir(&self, parent: Ino, name: &str) -> FsResult<()>;
        fn rename(
            &self,
            parent: Ino,
            name: &str,
            new_parent: Ino,
            new_name: &str,
            noreplace: bool
        ) -> FsResult<()>;
        fn open(&self, ino: Ino, mode: OpenMode) -> FsResult<Opened>;
        fn create(
            &self,
            parent: Ino,
            name: &str,
            mode: u32,
            open: OpenMode,
            caller: Caller
        ) -> FsResult<(Attr, Opened)>;
        fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes>;
        fn write(&self, fh: u64, offset: u64, data: Bytes, drop_setid: bool) -> FsResult<Written>;
        fn flush(&self, fh: u64, caller: Option<u32>) -> FsResult<()>;
        fn fsync(&self, fh: u64) -> FsResult<()>;
        fn release(&self, fh: u64) -> FsResult<()>;
        fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()>;
        fn opendir(&self, ino: Ino) -> FsResult<u64>;
        fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<Listed>>;
        fn getxattr(&self, ino: Ino, name: &str, size: u32) -> FsResult<XattrReply>;
        fn listxattr(&self, ino: Ino, size: u32) -> FsResult<XattrReply>;
        fn setxattr(
            &self,
            ino: Ino,
            name: &str,
            value: &[u8],
            create: bool,
            replace: bool
        ) -> FsResult<()>;
        fn removexattr(&self, ino: Ino, name: &str) -> FsResult<()>;
        /// At unmount: commits every dirty file still open (or aborts its upload).
        fn shutdown(&self) -> ();
    }
}
