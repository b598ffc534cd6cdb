//! The filesystem core driven directly (no kernel) over an in-process emulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestEmulator, pattern, runtime};
use cosmount::cos::retry::RetryPolicy;
use cosmount::cos::{
    Body, CopyObject, CosClient, CosError, GetObject, ListObjects, ObjectClient, ObjectInfo,
    ObjectMetadata, PutObject, client,
};
use cosmount::fs::attrs::{Kind, ROOT_INO};
use cosmount::fs::read::{PrefetchConfig, Prefetcher, Version};
use cosmount::fs::{Caller, Filesystem, FsConfig, OpenMode};
use tokio::sync::Semaphore;

/// Puts `data` as `obj` and gives a prefetcher of it (default tuning, 1 GiB of memory).
async fn put_and_prefetch(client: &Arc<CosClient>, data: &[u8]) -> Prefetcher {
    let out = client
        .put_object(PutObject::new(
            "obj",
            Body::Bytes(Bytes::from(data.to_vec())),
        ))
        .await
        .unwrap();
    Prefetcher::new(
        client.clone(),
        Version {
            key: "obj".into(),
            etag: out.etag,
            size: data.len() as u64,
        },
        PrefetchConfig::default(),
        Arc::new(Semaphore::new(1 << 20)),
    )
}

#[test]
fn a_failed_prefetch_does_not_poison_later_reads() {
    let emu = TestEmulator::start();
    let client = Arc::new(
        CosClient::new(cosmount::cos::ClientConfig {
            retry: RetryPolicy::none(),
            ..emu.client_config()
        })
        .unwrap(),
    );
    let data = pattern(6 << 20, 8);
    runtime().block_on(async {
        let mut p = put_and_prefetch(&client, &data).await;
        assert_eq!(p.read(0, 4096).await.unwrap(), &data[..4096]);
        emu.emulator.faults().set("get:500:always").unwrap();
        assert!(p.read(8 << 20, 4096).await.is_ok(), "past the end is empty");
        let mut failed = false;
        for off in (4096..(4 << 20)).step_by(128 << 10) {
            if p.read(off, 128 << 10).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "reads fail while COS fails");
        assert!(
            p.read(1 << 20, 4096).await.is_err(),
            "and again, without a panic"
        );
        emu.emulator.faults().clear();
        assert_eq!(
            p.read(1 << 20, 4096).await.unwrap(),
            &data[1 << 20..(1 << 20) + 4096],
            "then recover"
        );
    });
}

/// The kernel's readahead has several reads in flight, and they arrive slightly out of order
/// (1 MiB at 1 MiB before the one at 0, ...). Each is the same sequential reader: the window
/// keeps growing and the GETs in flight are kept, so the object comes in a few large GETs, not
/// one GET per read.
#[test]
fn reordered_readahead_reads_stay_one_stream() {
    let emu = TestEmulator::start();
    let client = emu.client();
    let mib = 1u64 << 20;
    let data = pattern(64 << 20, 9);
    runtime().block_on(async {
        let mut p = put_and_prefetch(&client, &data).await;
        let before = emu.op_count("get");
        // Pairs swapped, and now and then one read three places late.
        let mut order: Vec<u64> = (0..64).collect();
        for pair in order.chunks_mut(2) {
            pair.swap(0, 1);
        }
        for i in (5..60).step_by(9) {
            order.swap(i, i + 2);
        }
        for i in order {
            let got = p.read(i * mib, mib).await.unwrap();
            assert!(
                got == data[(i * mib) as usize..((i + 1) * mib) as usize],
                "bytes of read {i}"
            );
        }
        let gets = emu.op_count("get") - before;
        assert!(gets <= 24, "{gets} GETs for 64 reads of 1 MiB");
    });
}

#[test]
fn the_core_creates_lists_and_reads_without_a_kernel() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let fs = Filesystem::new(
        emu.client(),
        FsConfig {
            cache_dir: dir.path().to_path_buf(),
            ..FsConfig::default()
        },
    );
    runtime().block_on(async {
        let caller = Caller {
            uid: 1,
            gid: 2,
            umask: 0o022,
        };
        let d = fs.mkdir(ROOT_INO, "d", 0o777, caller).await.unwrap();
        assert_eq!(d.perm, 0o755, "the umask applies");
        let (attr, fh) = fs
            .create(
                d.ino,
                "f",
                0o640,
                OpenMode {
                    write: true,
                    ..Default::default()
                },
                caller,
            )
            .await
            .unwrap();
        assert_eq!(attr.perm, 0o640);
        let fh = fh.fh;
        fs.write(fh, 0, Bytes::from_static(b"hello"), false)
            .await
            .unwrap();
        fs.flush(fh, None).await.unwrap();
        fs.release(fh).await.unwrap();
        let fh = fs.opendir(d.ino).await.unwrap();
        let entries = fs.readdir(fh, 0, 100).await.unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec![".", "..", "f"]);
        fs.releasedir(fh);
        let a = fs.lookup(d.ino, "f").await.unwrap();
        assert_eq!((a.size, a.perm, a.uid, a.gid), (5, 0o640, 1, 2));
        let fh = fs
            .open(
                a.ino,
                OpenMode {
                    read: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .fh;
        assert_eq!(fs.read(fh, 1, 100).await.unwrap(), &b"ello"[..]);
        fs.release(fh).await.unwrap();
        let e = fs.rmdir(ROOT_INO, "d").await.unwrap_err();
        assert_eq!(e.errno(), libc::ENOTEMPTY);
    });
}

/// A file written from start to end goes into the part being filled at once (`write_now`:
/// no wait, no copy of the bytes), except where a part is full and must be sent; a write
/// anywhere else is left to `write`. Either way every byte comes back, across parts.
#[test]
fn writes_at_the_end_are_done_at_once_and_the_others_are_left_to_write() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let part = 5u64 << 20;
    let fs = Filesystem::new(
        emu.client(),
        FsConfig {
            cache_dir: dir.path().to_path_buf(),
            part_size: part,
            ..FsConfig::default()
        },
    );
    let caller = Caller {
        uid: 1,
        gid: 2,
        umask: 0o022,
    };
    let mut data = pattern(3 * part as usize + 12345, 21);
    runtime().block_on(async {
        let write = OpenMode {
            write: true,
            ..Default::default()
        };
        let (_, fh) = fs
            .create(ROOT_INO, "seq", 0o644, write, caller)
            .await
            .unwrap();
        let fh = fh.fh;
        let chunk = 128 << 10;
        let (mut now, mut later) = (0, 0);
        for (i, c) in data.chunks(chunk).enumerate() {
            let at = (i * chunk) as u64;
            if let Some(w) = fs.write_now(fh, at, c, false) {
                assert_eq!((w.len as usize, w.moved), (c.len(), false));
                now += 1;
            } else {
                fs.write(fh, at, Bytes::copy_from_slice(c), false)
                    .await
                    .unwrap();
                later += 1;
            }
        }
        assert!(
            now >= 10 * later,
            "{now} writes done at once, {later} left to write"
        );
        assert!(
            fs.write_now(fh, 4096, b"xyz", false).is_none(),
            "a write before the end is not done at once"
        );
        fs.write(fh, 4096, Bytes::from_static(b"xyz"), false)
            .await
            .unwrap();
        data[4096..4099].copy_from_slice(b"xyz");
        fs.flush(fh, None).await.unwrap();
        fs.release(fh).await.unwrap();
        let a = fs.lookup(ROOT_INO, "seq").await.unwrap();
        assert_eq!(a.size, data.len() as u64);
        let read = OpenMode {
            read: true,
            ..Default::default()
        };
        let fh = fs.open(a.ino, read).await.unwrap().fh;
        let mut got = Vec::new();
        while got.len() < data.len() {
            let b = fs.read(fh, got.len() as u64, 1 << 20).await.unwrap();
            assert!(!b.is_empty(), "short read at {}", got.len());
            got.extend_from_slice(&b);
        }
        assert!(got == data, "the bytes read back differ from those written");
        fs.release(fh).await.unwrap();
    });
}

/// A client that counts round trips: a request is one round trip deeper than the deepest one
/// that had been answered when it was sent, so requests sent together share a depth and
/// requests sent one after another's answer do not.
struct RoundTrips {
    inner: Arc<CosClient>,
    /// The deepest answered, the deepest sent, how many were sent, and which count (`take`)
    /// it is: an answer to a request of an earlier count changes nothing.
    depth: parking_lot::Mutex<(usize, usize, usize, u64)>,
}

impl RoundTrips {
    fn new(inner: Arc<CosClient>) -> Self {
        RoundTrips {
            inner,
            depth: parking_lot::Mutex::new((0, 0, 0, 0)),
        }
    }

    /// Round trips (the deepest request sent) and requests since the last call.
    fn take(&self) -> (usize, usize) {
        let mut d = self.depth.lock();
        let (_, deepest, sent, count) = *d;
        *d = (0, 0, 0, count + 1);
        (deepest, sent)
    }

    async fn count<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        let (depth, count) = {
            let mut d = self.depth.lock();
            d.1 = d.1.max(d.0 + 1);
            d.2 += 1;
            (d.0 + 1, d.3)
        };
        let out = request.await;
        let mut d = self.depth.lock();
        if d.3 == count {
            d.0 = d.0.max(depth);
        }
        out
    }
}

#[async_trait::async_trait]
impl ObjectClient for RoundTrips {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn head_bucket(&self) -> Result<(), CosError> {
        self.count(self.inner.head_bucket()).await
    }
    async fn put_bucket(&self) -> Result<(), CosError> {
        self.count(self.inner.put_bucket()).await
    }
    async fn delete_bucket(&self) -> Result<(), CosError> {
        self.count(self.inner.delete_bucket()).await
    }
    async fn list_buckets(&self) -> Result<Vec<client::BucketSummary>, CosError> {
        self.count(self.inner.list_buckets()).await
    }
    async fn head_object(&self, key: &str) -> Result<ObjectInfo, CosError> {
        self.count(self.inner.head_object(key)).await
    }
    async fn get_object(&self, req: GetObject) -> Result<client::GetObjectOutput, CosError> {
        self.count(self.inner.get_object(req)).await
    }
    async fn get_object_bytes(&self, req: GetObject) -> Result<(ObjectInfo, Bytes), CosError> {
        self.count(self.inner.get_object_bytes(req)).await
    }
    async fn put_object(&self, req: PutObject) -> Result<client::PutOutput, CosError> {
        self.count(self.inner.put_object(req)).await
    }
    async fn delete_object(&self, key: &str) -> Result<(), CosError> {
        self.count(self.inner.delete_object(key)).await
    }
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, CosError> {
        self.count(self.inner.delete_objects(keys)).await
    }
    async fn copy_object(&self, req: CopyObject) -> Result<client::PutOutput, CosError> {
        self.count(self.inner.copy_object(req)).await
    }
    async fn list_objects(&self, req: ListObjects) -> Result<client::ListPage, CosError> {
        self.count(self.inner.list_objects(req)).await
    }
    async fn create_multipart_upload(
        &self,
        key: &str,
        metadata: &ObjectMetadata,
    ) -> Result<String, CosError> {
        self.count(self.inner.create_multipart_upload(key, metadata))
            .await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<client::PartOutput, CosError> {
        self.count(self.inner.upload_part(key, upload_id, part_number, body))
            .await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        range: Option<(u64, u64)>,
        source_if_match: Option<&str>,
    ) -> Result<client::PartOutput, CosError> {
        self.count(self.inner.upload_part_copy(
            key,
            upload_id,
            part_number,
            source_key,
            range,
            source_if_match,
        ))
        .await
    }
    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[client::CompletedPart],
    ) -> Result<client::PutOutput, CosError> {
        self.count(self.inner.complete_multipart_upload(key, upload_id, parts))
            .await
    }
    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), CosError> {
        self.count(self.inner.abort_multipart_upload(key, upload_id))
            .await
    }
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
        marker: u32,
    ) -> Result<client::PartsPage, CosError> {
        self.count(self.inner.list_parts(key, upload_id, marker))
            .await
    }
    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
    ) -> Result<client::UploadsPage, CosError> {
        self.count(
            self.inner
                .list_multipart_uploads(prefix, key_marker, upload_id_marker),
        )
        .await
    }
}

#[test]
fn a_cold_lookup_is_one_round_trip_whatever_the_name_is() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let client = Arc::new(RoundTrips::new(emu.client()));
    let fs = Filesystem::new(
        client.clone(),
        FsConfig {
            cache_dir: dir.path().to_path_buf(),
            ..FsConfig::default()
        },
    );
    let caller = Caller {
        uid: 1,
        gid: 2,
        umask: 0o022,
    };
    runtime().block_on(async {
        // A directory with a marker (mode and owner in it), one without (only a file under
        // it), a file, and nothing.
        fs.mkdir(ROOT_INO, "marked", 0o750, caller).await.unwrap();
        for key in ["implicit/inside", "file"] {
            emu.client()
                .put_object(PutObject::new(key, Body::Bytes(Bytes::from_static(b"x"))))
                .await
                .unwrap();
        }
    });
    // A fresh filesystem over the same bucket: nothing cached.
    drop(fs);
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(300);
    let fs = Filesystem::new(
        client.clone(),
        FsConfig {
            cache_dir: dir.path().to_path_buf(),
            metadata_ttl: Some(ttl),
            ..FsConfig::default()
        },
    );
    // Every answer 30 ms late, so that requests sent together are sent before any answer
    // comes back, however the runtime schedules them.
    emu.emulator.faults().set("any:delay=30ms:1").unwrap();
    runtime().block_on(async {
        client.take();
        let a = fs.lookup(ROOT_INO, "marked").await.unwrap();
        assert_eq!((a.kind, a.perm, a.uid, a.gid), (Kind::Dir, 0o750, 1, 2));
        // Each: HEAD of the name, HEAD of its marker, LIST of what is under it.
        assert_eq!(client.take(), (1, 3), "a directory with a marker");
        let a = fs.lookup(ROOT_INO, "implicit").await.unwrap();
        assert_eq!(a.kind, Kind::Dir);
        assert_eq!(client.take(), (1, 3), "a directory without one");
        let a = fs.lookup(ROOT_INO, "file").await.unwrap();
        assert_eq!((a.kind, a.size), (Kind::File, 1));
        assert_eq!(client.take(), (1, 3), "a file");
        assert!(fs.lookup(ROOT_INO, "none").await.is_err());
        assert_eq!(client.take(), (1, 3), "nothing");
        // Once its metadata has expired, a name known as a file is asked about without a
        // marker's HEAD...
        tokio::time::sleep(ttl).await;
        let a = fs.lookup(ROOT_INO, "file").await.unwrap();
        assert_eq!((a.kind, a.size), (Kind::File, 1));
        assert_eq!(client.take(), (1, 2), "a file again");
        // ...and when another client has made it a directory meanwhile, the marker is asked
        // for after the LIST showed it.
        let other = emu.client();
        other.delete_object("file").await.unwrap();
        let mut marker = PutObject::new("file/", Body::Bytes(Bytes::new()));
        marker
            .metadata
            .user
            .insert("mode".into(), format!("{}", libc::S_IFDIR | 0o750));
        other.put_object(marker).await.unwrap();
        tokio::time::sleep(ttl).await;
        let a = fs.lookup(ROOT_INO, "file").await.unwrap();
        assert_eq!((a.kind, a.perm), (Kind::Dir, 0o750));
        assert_eq!(client.take(), (2, 3), "a file that became a directory");
    });
}

/// A program's run of a file ends with a RELEASE that the kernel sends after the program has
/// gone: an open for writing that comes first waits for it (up to a grace period) instead of
/// answering ETXTBSY, while a program still running keeps the file busy.
#[test]
fn an_open_for_writing_waits_for_releases_on_their_way() {
    let emu = TestEmulator::start();
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(Filesystem::new(
        emu.client(),
        FsConfig {
            cache_dir: dir.path().to_path_buf(),
            ..FsConfig::default()
        },
    ));
    let write = OpenMode {
        write: true,
        append: true,
        ..Default::default()
    };
    runtime().block_on(async {
        let (attr, made) = fs
            .create(ROOT_INO, "prog", 0o755, write, Caller::default())
            .await
            .unwrap();
        fs.write(made.fh, 0, Bytes::from_static(b"#!/bin/sh\n"), false)
            .await
            .unwrap();
        fs.release(made.fh).await.unwrap();
        let exec = OpenMode {
            read: true,
            exec: true,
            ..Default::default()
        };
        let running = fs.open(attr.ino, exec).await.unwrap().fh;
        let e = fs.open(attr.ino, write).await.err().expect("busy");
        assert_eq!(e.errno(), libc::ETXTBSY, "while the program runs");
        let later = {
            let fs = fs.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                fs.release(running).await
            })
        };
        let w = fs
            .open(attr.ino, write)
            .await
            .expect("opened once the release arrived");
        later.await.unwrap().unwrap();
        fs.release(w.fh).await.unwrap();
    });
}
