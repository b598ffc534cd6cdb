//! The filesystem core driven directly (no kernel) over an in-process emulator.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{TestEmulator, pattern, runtime};
use cosmount::cos::retry::RetryPolicy;
use cosmount::cos::{Body, CosClient, ObjectClient, PutObject};
use cosmount::fs::attrs::ROOT_INO;
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
        fs.write(fh, 0, Bytes::from_static(b"hello")).await.unwrap();
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
