//! Filesystem errors and the single place where each becomes an errno.

use crate::cos::CosError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("is a directory")]
    IsDir,
    #[error("not a directory")]
    NotDir,
    #[error("the object changed since it was opened")]
    Stale,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("file name too long")]
    NameTooLong,
    #[error("read-only file system")]
    ReadOnly,
    #[error("operation not supported: {0}")]
    NotSupported(&'static str),
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("bad file handle")]
    BadHandle,
    #[error("file too large for COS")]
    TooLarge,
    #[error("the object is SSE-C encrypted and the mount's key is missing or different")]
    SseKey,
    #[error("a previous commit of this file failed; its data were not stored")]
    CommitFailed,
    #[error("the object is in archive storage (ARCHIVE or DEEP_ARCHIVE) and not restored")]
    Archived,
    #[error("no such extended attribute")]
    NoAttr,
    #[error("the extended attributes would not fit in COS's 2 KB metadata header")]
    TooBig,
    #[error("the object's metadata would pass COS's 4 KB limit")]
    NoSpace,
    #[error("the buffer is too small, or the attribute name too long")]
    Range,
    #[error("extended attributes are turned off (--no-xattr)")]
    XattrsOff,
    #[error("the file is open for reading by FUSE passthrough; close it to write it")]
    Busy,
    #[error("invalid cross-device link: {0}")]
    CrossDevice(&'static str),
    #[error("the account has as many buckets as COS allows")]
    BucketQuota,
    #[error("COS request failed: {0}")]
    Cos(#[from] CosError),
    #[error("local I/O error: {0}")]
    Local(String),
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::Local(e.to_string())
    }
}

impl FsError {
    /// Maps a COS error from reading an object: SSE-C key problems and changed objects get
    /// their own variants, everything else stays a COS error (EIO).
    pub fn from_read(e: CosError) -> Self {
        if e.is_sse_key_error() {
            FsError::SseKey
        } else if e.is_precondition_failed() {
            FsError::Stale
        } else if e.is_not_found() {
            FsError::NotFound
        } else if e.code() == Some("InvalidObjectState") {
            FsError::Archived
        } else {
            FsError::Cos(e)
        }
    }

    /// Maps a COS error from PUT or DELETE Bucket (mkdir and rmdir at the top of a mount of
    /// every bucket). A name taken by another account is as taken as one of ours.
    pub fn from_bucket_call(e: CosError) -> Self {
        match e.code() {
            Some("BucketAlreadyExists" | "BucketAlreadyOwnedByYou") => FsError::Exists,
            Some("BucketNotEmpty") => FsError::NotEmpty,
            Some("InvalidBucketName" | "BucketNameTooLong") => {
                FsError::Invalid("COS refuses this bucket name")
            }
            Some("NoSuchBucket") => FsError::NotFound,
            Some("TooManyBuckets") => FsError::BucketQuota,
            _ => FsError::Cos(e),
        }
    }

    /// The errno reported to the kernel. Every choice is made here and only here.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::IsDir => libc::EISDIR,
            FsError::NotDir => libc::ENOTDIR,
            // A reader pinned to an ETag sees the object replaced: ESTALE, as NFS does, rather
            // than mixing bytes of two versions.
            FsError::Stale => libc::ESTALE,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::ReadOnly => libc::EROFS,
            // ENOTSUP rather than ENOSYS: the kernel would stop asking after ENOSYS, and the
            // answer depends on the arguments (e.g. RENAME_EXCHANGE), not the operation.
            FsError::NotSupported(_) => libc::ENOTSUP,
            // link(2) documents EPERM for file systems without hard links.
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::BadHandle => libc::EBADF,
            FsError::TooLarge => libc::EFBIG,
            // Reading without the right SSE-C key: access is denied, no bytes are wrong.
            FsError::SseKey => libc::EACCES,
            FsError::CommitFailed => libc::EIO,
            // Its bytes cannot be had until someone restores it: an I/O error, with a log line
            // that says so (handles.rs), rather than EACCES, which would send users looking at
            // permissions.
            FsError::Archived => libc::EIO,
            FsError::NoAttr => libc::ENODATA,
            // setxattr(2): "the size of name or value exceeds a filesystem-specific limit".
            FsError::TooBig => libc::E2BIG,
            FsError::Busy => libc::ETXTBSY,
            // setxattr(2): "insufficient space remaining to store the extended attribute".
            FsError::NoSpace => libc::ENOSPC,
            FsError::Range => libc::ERANGE,
            // ENOSYS, which the kernel turns into EOPNOTSUPP for the program and remembers, so
            // it stops asking (for security.capability on every write, for one).
            FsError::XattrsOff => libc::ENOSYS,
            // rename(2) between two buckets: EXDEV, so mv copies and deletes instead.
            FsError::CrossDevice(_) => libc::EXDEV,
            // mkdir(2): "the user's quota of ... inodes on the file system has been exhausted";
            // COS allows an account a fixed number of buckets.
            FsError::BucketQuota => libc::EDQUOT,
            FsError::Cos(e) => match e.status() {
                Some(403) => libc::EACCES,
                _ => libc::EIO,
            },
            FsError::Local(_) => libc::EIO,
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cos::error::ServiceError;

    fn svc(status: u16, code: &str) -> CosError {
        CosError::Service(ServiceError {
            status,
            code: code.into(),
            message: String::new(),
            request_id: String::new(),
            in_ok_response: false,
        })
    }

    #[test]
    fn read_errors_map_to_meaningful_errnos() {
        assert_eq!(
            FsError::from_read(svc(412, "PreconditionFailed")).errno(),
            libc::ESTALE
        );
        assert_eq!(
            FsError::from_read(svc(400, "SsecDecryptHeaderInvalid")).errno(),
            libc::EACCES
        );
        assert_eq!(
            FsError::from_read(svc(404, "NoSuchKey")).errno(),
            libc::ENOENT
        );
        assert_eq!(FsError::from_read(svc(503, "SlowDown")).errno(), libc::EIO);
        assert_eq!(FsError::Cos(svc(403, "AccessDenied")).errno(), libc::EACCES);
    }

    #[test]
    fn bucket_errors_map_to_directory_errnos() {
        let errno = |status, code| FsError::from_bucket_call(svc(status, code)).errno();
        assert_eq!(errno(409, "BucketAlreadyExists"), libc::EEXIST);
        assert_eq!(errno(409, "BucketAlreadyOwnedByYou"), libc::EEXIST);
        assert_eq!(errno(409, "BucketNotEmpty"), libc::ENOTEMPTY);
        assert_eq!(errno(400, "InvalidBucketName"), libc::EINVAL);
        assert_eq!(errno(400, "BucketNameTooLong"), libc::EINVAL);
        assert_eq!(errno(404, "NoSuchBucket"), libc::ENOENT);
        assert_eq!(errno(400, "TooManyBuckets"), libc::EDQUOT);
        assert_eq!(errno(403, "AccessDenied"), libc::EACCES);
        assert_eq!(errno(503, "SlowDown"), libc::EIO);
    }
}
